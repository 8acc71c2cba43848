"""The sequence tagging head: spaCy's NER component, trained for a project's own entity types.

It starts from the pretrained pipeline's NER (en_core_web_sm 3.8: a transition-based parser over its own
tok2vec, trained on OntoNotes), adds the project's types as labels and goes on training on the TRAIN
texts (`resume_training`), so the pretrained token features are kept and only what the project's types
need is learnt. Predictions keep the project's types only (the OntoNotes labels the output layer still
holds are dropped). TEST is scored at the entity level, exact span and type, per type and overall
(micro-averaged), as CoNLL and spaCy's own scorer do.

Worker and command line only: spaCy is never imported by the web process.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A text with its spans: (text, [{"start", "end", "label"}]).
Row = tuple[str, Sequence[dict]]
# The pretrained pipeline's parts the NER component does not read (its tok2vec is its own).
_NOT_NER = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]


@dataclass
class NerResult:
    metrics: dict[str, Any]
    f1: float | None
    seconds: float
    epochs: int
    # Spans of training texts that did not fall on the tokenizer's tokens (counted, then widened to them).
    misaligned: int = 0


@dataclass
class SpanScores:
    """Entity-level counts, exact span and type."""

    true_positive: dict[str, int] = field(default_factory=dict)
    predicted: dict[str, int] = field(default_factory=dict)
    gold: dict[str, int] = field(default_factory=dict)

    def add(self, gold: Iterable[dict], predicted: Iterable[dict]) -> None:
        gold_set = {(s["start"], s["end"], s["label"]) for s in gold}
        predicted_set = {(s["start"], s["end"], s["label"]) for s in predicted}
        for _, _, label in gold_set:
            self.gold[label] = self.gold.get(label, 0) + 1
        for _, _, label in predicted_set:
            self.predicted[label] = self.predicted.get(label, 0) + 1
        for _, _, label in gold_set & predicted_set:
            self.true_positive[label] = self.true_positive.get(label, 0) + 1

    def report(self, types: Sequence[str]) -> dict[str, Any]:
        def prf(tp: int, predicted: int, gold: int) -> dict[str, Any]:
            precision = tp / predicted if predicted else None
            recall = tp / gold if gold else None
            f1 = (2 * tp / (predicted + gold)) if predicted + gold else None
            return {"precision": precision, "recall": recall, "f1": f1, "support": gold, "predicted": predicted}

        per_type = {t: prf(self.true_positive.get(t, 0), self.predicted.get(t, 0), self.gold.get(t, 0)) for t in types}
        overall = prf(sum(self.true_positive.values()), sum(self.predicted.values()), sum(self.gold.values()))
        return {"overall": overall, "per_type": per_type}


def load_head(path: Path):
    """A trained head (a spaCy pipeline folder written by `train_ner`)."""
    import spacy

    return spacy.load(path)


def _spans(doc, wanted: set[str]) -> list[dict]:
    """A doc's entities of the project's types as spans. spaCy may end an entity on a whitespace token ("New
    York\n\n"), which `Item.tokens` leaves out: the span is trimmed to its words, so it lies on the tokens
    the screen and the save check use."""
    out = []
    for e in doc.ents:
        if e.label_ not in wanted:
            continue
        text = e.text
        start = e.start_char + (len(text) - len(text.lstrip()))
        end = e.start_char + len(text.rstrip())
        if end > start:
            out.append({"start": start, "end": end, "label": e.label_})
    return out


def predict(nlp, texts: Sequence[str], *, types: Sequence[str], batch_size: int = 64) -> list[list[dict]]:
    """Each text's predicted spans, of the project's types only."""
    wanted = set(types)
    return [_spans(doc, wanted) for doc in nlp.pipe(texts, batch_size=batch_size)]


# The cost model of sequence tagging (seconds): labelling a text by hand, and reviewing the model's spans.
HAND_PER_TEXT, HAND_PER_ENTITY = 2.5, 2.0
REVIEW_PER_TEXT, REVIEW_PER_EDIT = 1.0, 2.0
REVIEW_BINS = 5


def edits(predicted: Sequence[dict], gold: Sequence[dict]) -> int:
    """Spans to fix, add or remove to turn `predicted` into `gold` (exact span and type): a wrong span that
    overlaps a missing one is one fix, not a removal and an addition."""
    def key(s: dict) -> tuple:
        return s["start"], s["end"], s["label"]

    wrong = [s for s in predicted if key(s) not in {key(g) for g in gold}]
    missing = [g for g in gold if key(g) not in {key(s) for s in predicted}]
    fixed, used = 0, set()
    for g in missing:
        for n, s in enumerate(wrong):
            if n not in used and s["start"] < g["end"] and g["start"] < s["end"]:
                used.add(n)
                fixed += 1
                break
    return len(wrong) + len(missing) - fixed


def review_bins(confidences: Sequence[float], predicted: Sequence[Sequence[dict]],
                gold: Sequence[Sequence[dict]]) -> list[dict]:
    """What reviewing costs at each confidence, measured on TEST (which the version never trained on): TEST
    texts split by their confidence into up to REVIEW_BINS groups of equal size, each with its mean edits,
    mean entities and the share a reviewer would accept as it stands. That share is the expected one, the
    posterior mean under a uniform prior ((right + 1) / (texts + 2)): 8 right of 10 is 0.75, not 0.8, so
    a first model scored on ten TEST texts does not send a whole pool to review on a lucky draw."""
    rows = sorted(zip(confidences, predicted, gold, strict=True), key=lambda r: r[0])
    if not rows:
        return []
    n_bins = max(1, min(REVIEW_BINS, len(rows) // 10))
    bins = []
    for b in range(n_bins):
        part = rows[b * len(rows) // n_bins:(b + 1) * len(rows) // n_bins]
        e = [edits(p, g) for _, p, g in part]
        clean = sum(1 for x in e if x == 0)
        bins.append({"low": part[0][0], "high": part[-1][0], "texts": len(part), "clean": clean,
                     "mean_edits": sum(e) / len(part), "clean_share": (clean + 1) / (len(part) + 2),
                     "mean_entities": sum(len(g) for _, _, g in part) / len(part)})
    return bins


def _bin(bins: Sequence[dict], confidence: float) -> dict | None:
    return next((b for b in bins if confidence <= b["high"]), bins[-1] if bins else None)


def review_is_cheaper(bins: Sequence[dict], confidence: float) -> bool:
    """Whether, at this confidence, fixing the model's spans is expected to cost less than labelling by hand
    (1.0 s + 2.0 s per edit against 2.5 s + 2.0 s per entity): the screen pre-fills a text's spans only then."""
    chosen = _bin(bins, confidence)
    if chosen is None:
        return False
    review = REVIEW_PER_TEXT + REVIEW_PER_EDIT * chosen["mean_edits"]
    hand = HAND_PER_TEXT + HAND_PER_ENTITY * chosen["mean_entities"]
    return review < hand


def goes_to_review(bins: Sequence[dict], confidence: float, *, floor: float) -> bool:
    """The cost rule: a text goes to review when, at its confidence, reviewing the model's spans is expected to
    cost less than labelling it by hand, and reviewers would accept at least `floor` of such texts unchanged."""
    chosen = _bin(bins, confidence)
    return chosen is not None and review_is_cheaper(bins, confidence) and chosen["clean_share"] >= floor


@dataclass
class Tagged:
    """One text's predicted spans with how sure the parser was of the decisions that made them."""

    spans: list[dict]
    # The least probable decision of the greedy parse (softmax over the valid transitions at each step):
    # every token's "begin / continue / end an entity, or not" goes through one, so a missed entity is as
    # unsure as a wrong one. 1.0 for an empty text.
    confidence: float
    # The mean, over the decisions, of their entropy divided by log(number of valid transitions): 0..1.
    entropy: float


def tag_with_confidence(nlp, texts: Sequence[str], *, types: Sequence[str], batch_size: int = 256) -> list[Tagged]:
    """Greedy NER parsing as spaCy does it (`transition_states` picks the best valid transition), with each
    step's probabilities kept. spaCy's beam parse would give span probabilities, but on a greedily trained
    model it put 0.999 on a parse spanning "New York with Alice tomorrow to see Apple in Paris" (measured on
    en_core_web_sm 3.8), so the greedy decisions' own probabilities are what is measured instead."""
    import numpy as np

    ner: Any = nlp.get_pipe("ner")
    names = [ner.moves.get_class_name(i) for i in range(ner.moves.n_moves)]
    wanted = set(types)
    out: list[Tagged] = []
    for start in range(0, len(texts), batch_size):
        docs = [nlp.make_doc(t) for t in texts[start:start + batch_size]]
        if not any(len(d) for d in docs):  # nothing to parse (spaCy's own greedy parse skips such a batch too)
            out.extend(Tagged(spans=[], confidence=1.0, entropy=0.0) for _ in docs)
            continue
        batch = ner.moves.init_batch(docs)
        where = {id(state): i for i, state in enumerate(batch)}
        confidence = np.ones(len(docs))
        entropy_sum, steps = np.zeros(len(docs)), np.zeros(len(docs))
        model = ner.model.predict(docs)
        states = [s for s in batch if not s.is_final()]
        while states:
            scores = model.predict(states)
            valid = np.array([[ner.moves.is_valid(s, n) for n in names] for s in states], dtype=bool)
            z = np.where(valid, scores, -np.inf)
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            logs = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
            h = -(p * logs).sum(axis=1) / np.log(np.maximum(valid.sum(axis=1), 2))
            for row, state, hi in zip(p, states, h, strict=True):
                i = where[id(state)]
                confidence[i] = min(confidence[i], float(row.max()))
                entropy_sum[i] += float(hi)
                steps[i] += 1
            states = ner.transition_states(states, scores)
        model.clear_memory()
        ner.set_annotations(docs, batch)
        for i, doc in enumerate(docs):
            out.append(Tagged(spans=_spans(doc, wanted), confidence=float(confidence[i]),
                              entropy=float(entropy_sum[i] / steps[i]) if steps[i] else 0.0))
    return out


def score(nlp, rows: Sequence[Row], *, types: Sequence[str]) -> dict[str, Any]:
    scores = SpanScores()
    for (_, gold), predicted in zip(rows, predict(nlp, [t for t, _ in rows], types=types), strict=True):
        scores.add(gold, predicted)
    return scores.report(types)


def _examples(nlp, rows: Sequence[Row]) -> tuple[list, int]:
    from spacy.training import Example

    examples, misaligned = [], 0
    for text, spans in rows:
        doc = nlp.make_doc(text)
        entities = []
        for s in spans:
            # A span drawn on our tokens is on spaCy's (the same tokenizer); an imported one may not be.
            span = doc.char_span(s["start"], s["end"], label=s["label"], alignment_mode="expand")
            if span is None:
                misaligned += 1
                continue
            if (span.start_char, span.end_char) != (s["start"], s["end"]):
                misaligned += 1
            entities.append((span.start_char, span.end_char, s["label"]))
        # Widening may make two spans overlap: keep the first (spaCy refuses overlapping entities).
        kept, end = [], -1
        for start, stop, label in sorted(entities):
            if start >= end:
                kept.append((start, stop, label))
                end = stop
        examples.append(Example.from_dict(doc, {"entities": kept}))
    return examples, misaligned


def train_ner(
    *, types: Sequence[str], train: Sequence[Row], test: Sequence[Row], out_dir: Path, epochs: int,
    seconds: float, seed: int = 0, batch_size: int = 16, dropout: float = 0.2,
    on_epoch: Callable[[int], object] | None = None,
) -> NerResult:
    """Train for `epochs` passes over TRAIN or until `seconds` have gone (whichever is first), then score TEST
    and write the pipeline to `out_dir` (through a temporary sibling: a reader never sees half a model)."""
    from spacy.util import fix_random_seed, minibatch

    from .spans import load_pipeline

    started = time.monotonic()
    fix_random_seed(seed)
    rng = random.Random(seed)
    nlp = load_pipeline(exclude=_NOT_NER)
    ner: Any = nlp.get_pipe("ner")  # spaCy's EntityRecognizer (typed as a plain callable)
    for label in types:
        ner.add_label(label)
    examples, misaligned = _examples(nlp, train)
    optimizer = nlp.resume_training()
    done = 0
    for _ in range(max(1, epochs)):
        rng.shuffle(examples)
        for batch in minibatch(examples, size=batch_size):
            nlp.update(batch, sgd=optimizer, drop=dropout, losses={})
        done += 1
        if on_epoch is not None:
            on_epoch(done)  # the caller's heartbeat: a long training is not taken for a dead one
        if time.monotonic() - started > seconds:
            break
    nlp.meta["lightbulb"] = {"types": list(types), "train_texts": len(train), "epochs": done}
    report = score(nlp, test, types=types) if test else {"overall": {}, "per_type": {}}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        nlp.to_disk(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    metrics = {"kind": "sequence", **report, "epochs": done, "misaligned_spans": misaligned,
               "train_texts": len(train), "test_texts": len(test)}
    return NerResult(metrics=metrics, f1=report["overall"].get("f1"), seconds=time.monotonic() - started,
                     epochs=done, misaligned=misaligned)
