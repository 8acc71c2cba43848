"""The real encoders on tiny data: MobileNetV2 (ImageNet weights, offline), all-MiniLM-L6-v2 and the hashed
n-grams beside it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modeling.ml.encoders import load_encoder
from projects.encoders import REGISTRY, EncoderError, default_encoder, spec_for
from tests.conftest import png_bytes


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_unknown_or_mismatched_encoders_are_clear_errors():
    available = "efficientnet_lite0, minilm_l6, minilm_ngrams, mobilenet_lite0, mobilenet_v2, text_ngrams"
    with pytest.raises(EncoderError, match=f"unknown encoder 'resnet9000' \\(available: {available}\\)"):
        spec_for("resnet9000")
    with pytest.raises(EncoderError, match="embeds images, not text"):
        spec_for("mobilenet_v2", data_type="text")
    assert default_encoder("images") == "mobilenet_lite0"
    assert default_encoder("text") == default_encoder("json") == "minilm_ngrams"


def test_mobilenet_embeds_images():
    rgba = io.BytesIO()
    Image.new("RGBA", (40, 20), (0, 128, 0, 90)).save(rgba, format="PNG")
    images = [png_bytes((220, 30, 30), seed=1), png_bytes((220, 30, 30), seed=2), png_bytes((30, 30, 220), seed=3),
              rgba.getvalue()]
    fp32 = load_encoder("mobilenet_v2", bf16=False).embed(images)
    assert fp32.shape == (4, REGISTRY["mobilenet_v2"].dim) and fp32.dtype == np.float32
    assert np.isfinite(fp32).all()
    # Two noisy reds are closer to each other than to blue.
    same, other = _cos(fp32[:1], fp32[1:2])[0], _cos(fp32[:1], fp32[2:3])[0]
    assert same > other
    np.testing.assert_allclose(
        load_encoder("mobilenet_v2", bf16=False).embed(images[:1]), fp32[:1], rtol=1e-4, atol=1e-5
    )
    # The default is fp32 (bf16 is opt-in until it is shown to keep 0.998 cosine on real images).
    assert load_encoder("mobilenet_v2").bf16 is False


def test_minilm_embeds_text_by_meaning():
    encoder = load_encoder("minilm_l6", bf16=False)
    vectors = encoder.embed(["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly earnings rose 5%."])
    assert vectors.shape == (3, REGISTRY["minilm_l6"].dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    bf16 = load_encoder("minilm_l6")
    if bf16.bf16:
        assert _cos(bf16.embed(["The cat sat on the mat."]), vectors[:1])[0] >= 0.998
    assert encoder.embed([]).shape == (0, 384)


def test_efficientnet_lite0_and_the_pair_embed_images_from_the_provisioned_checkpoints():
    images = [png_bytes((220, 30, 30), seed=1), png_bytes((220, 30, 30), seed=2), png_bytes((30, 30, 220), seed=3)]
    lite = load_encoder("efficientnet_lite0", bf16=False).embed(images)
    assert lite.shape == (3, REGISTRY["efficientnet_lite0"].dim) == (3, 1280) and np.isfinite(lite).all()
    assert _cos(lite[:1], lite[1:2])[0] > _cos(lite[:1], lite[2:3])[0]  # two noisy reds, one blue
    pair = load_encoder("mobilenet_lite0", bf16=False).embed(images)
    assert pair.shape == (3, 2560)
    mobilenet = load_encoder("mobilenet_v2", bf16=False).embed(images)
    np.testing.assert_allclose(pair[:, :1280], mobilenet / np.linalg.norm(mobilenet, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(pair[:, 1280:], lite / np.linalg.norm(lite, axis=1, keepdims=True), atol=1e-6)
    assert load_encoder("mobilenet_lite0").embed([]).shape == (0, 2560)


def test_the_hashed_ngrams_are_the_same_vector_everywhere_and_read_the_whole_text():
    encoder = load_encoder("text_ngrams")
    vectors = encoder.embed(["spam spam", "Spam spam", "ham and eggs", ""])
    assert vectors.shape == (4, 2048) and vectors.dtype == np.float32
    # Lower-cased; each block (words, characters) unit length; an empty text is all zeros.
    np.testing.assert_array_equal(vectors[0], vectors[1])
    np.testing.assert_allclose(np.linalg.norm(vectors[:3, :1024], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors[:3, 1024:], axis=1), 1.0, rtol=1e-5)
    assert not vectors[3].any()
    # Nothing is fitted: the buckets are MurmurHash3's. Recorded once; if a library update moved them, every
    # cached vector and exported bundle would silently mean something else, so this must fail first.
    assert np.flatnonzero(vectors[0]).tolist() == [71, 168, 1061, 1159, 1192, 1214, 1356, 1527, 1783, 1849, 2038]
    np.testing.assert_allclose(vectors[0][[71, 168]], [0.5336, -0.8457], atol=1e-4)
    # The whole text counts (MiniLM stops at 256 word pieces): a word at the end of a long e-mail shows.
    long = "Received: from mail.example.com " * 400
    assert not np.array_equal(encoder.embed([long])[0], encoder.embed([long + " viagra"])[0])


def test_the_text_default_puts_minilm_and_the_ngrams_side_by_side():
    texts = ["The cat sat on the mat.", "Quarterly earnings rose 5%."]
    both = load_encoder("minilm_ngrams", bf16=False).embed(texts)
    assert both.shape == (2, REGISTRY["minilm_ngrams"].dim) == (2, 384 + 2048)
    np.testing.assert_allclose(both[:, :384], load_encoder("minilm_l6", bf16=False).embed(texts), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(both[:, 384:], load_encoder("text_ngrams").embed(texts))
    assert load_encoder("minilm_ngrams").embed([]).shape == (0, 2432)


def test_the_compiled_image_encoder_gives_the_same_features():
    from modeling.ml.encoders import ImageEncoder

    images = [png_bytes((220, 30, 30), seed=i) for i in range(5)] + [png_bytes((30, 30, 220), seed=9)]
    eager = ImageEncoder(bf16=False)
    expected = eager.embed(images)
    compiled = ImageEncoder(bf16=False)
    compiled.compile()
    got = compiled.embed(images)  # six images: one short batch, padded to the compiled size
    assert compiled.compiled  # the compiled graph ran (no fallback to eager)
    assert got.shape == expected.shape
    assert _cos(got, expected).min() > 0.9999
