"""The encoder catalogue: which pretrained encoders exist, what they embed, their dimensions.

Plain data, no torch and no Django, so projects (config checks, model defaults), the pages and the
exported-model loader read it without reaching into modeling. The code that loads and runs each
encoder is `modeling/ml/encoders.py`, imported only by workers and commands.
"""

from __future__ import annotations

from dataclasses import dataclass


class EncoderError(ValueError):
    """An encoder name that is not registered, or one that does not fit the project's data type."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    version: str  # part of the embedding cache key: a new version invalidates cached vectors
    data_types: frozenset[str]
    dim: int
    description: str


REGISTRY: dict[str, EncoderSpec] = {
    "mobilenet_v2": EncoderSpec(
        name="mobilenet_v2",
        version="imagenet1k_v1-224",
        data_types=frozenset({"images"}),
        dim=1280,
        description="torchvision MobileNetV2, ImageNet-1k weights (IMAGENET1K_V1), global-average-pooled features",
    ),
    "efficientnet_lite0": EncoderSpec(
        name="efficientnet_lite0",
        version="imagenet-57934424-224-pm1",
        data_types=frozenset({"images"}),
        dim=1280,
        description="EfficientNet-Lite0, ImageNet weights converted from TensorFlow's, global-average-pooled features",
    ),
    # The image default: on fashion_mnist_2k and emoji the pair beat either network alone over the whole
    # learning curve (docs/benchmarks.md, "Feature sets"), at twice the embedding time.
    "mobilenet_lite0": EncoderSpec(
        name="mobilenet_lite0",
        version="imagenet1k_v1-224+imagenet-57934424-224-pm1",
        data_types=frozenset({"images"}),
        dim=1280 + 1280,
        description="MobileNetV2 beside EfficientNet-Lite0, each block L2-normalised, concatenated",
    ),
    "minilm_l6": EncoderSpec(
        name="minilm_l6",
        version="all-minilm-l6-v2",
        data_types=frozenset({"text", "json"}),
        dim=384,
        description="sentence-transformers all-MiniLM-L6-v2, mean-pooled, L2-normalised",
    ),
    # No weights and nothing fitted: the same text gives the same vector in every project, the inference
    # worker and a bundle. It reads the whole text (MiniLM stops at 256 word pieces, an e-mail's headers).
    "text_ngrams": EncoderSpec(
        name="text_ngrams",
        version="hashed-w1-2-c3-5-1024x2-logtf",
        data_types=frozenset({"text", "json"}),
        dim=2048,
        description="word 1-2-grams and character 3-5-grams, hashed into 1,024 signed buckets each, "
        "log term counts, each block L2-normalised",
    ),
    # The text default: measured on spam_assassin_2k and election_tweets (docs/benchmarks.md, "Feature
    # sets"), the two together beat either alone over the whole learning curve.
    "minilm_ngrams": EncoderSpec(
        name="minilm_ngrams",
        version="all-minilm-l6-v2+hashed-w1-2-c3-5-1024x2-logtf",
        data_types=frozenset({"text", "json"}),
        dim=384 + 2048,
        description="all-MiniLM-L6-v2 beside hashed word and character n-grams (text_ngrams), concatenated",
    ),
}
DEFAULT_FOR_DATA_TYPE = {"images": "mobilenet_lite0", "text": "minilm_ngrams", "json": "minilm_ngrams"}


def spec_for(name: str, *, data_type: str | None = None) -> EncoderSpec:
    spec = REGISTRY.get(name)
    if spec is None:
        raise EncoderError(f"unknown encoder '{name}' (available: {', '.join(sorted(REGISTRY))})")
    if data_type is not None and data_type not in spec.data_types:
        raise EncoderError(f"encoder '{name}' embeds {', '.join(sorted(spec.data_types))}, not {data_type}")
    return spec


def default_encoder(data_type: str) -> str:
    return DEFAULT_FOR_DATA_TYPE[data_type]
