"""A trained head and how it scores embeddings: numpy only, so anything can load a model version.

The head is multinomial logistic regression on standardised encoder features:
``softmax((((x - mean) / scale) @ weight.T + bias) / temperature)``. Training (torch) lives in `training.py`; the
same arithmetic here serves ranking, predictions and (later) the exported bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from lightbulb_site.atomic import atomic_write

FORMAT = "lightbulb-head/1"


@dataclass
class Head:
    classes: list[str]
    weight: np.ndarray  # (n_classes, dim) float32
    bias: np.ndarray  # (n_classes,)
    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    encoder: str
    encoder_version: str
    info: dict = field(default_factory=dict)  # l2 strength, counts: kept with the weights for the record
    # Calibration: logits are divided by this before the softmax (fitted on TEST, see calibration.py).
    temperature: float = 1.0

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (what training fits)."""
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.scale
        return x @ self.weight.T + self.bias

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, in class order."""
        return softmax(self.logits(features) / self.temperature)

    def write(self, fh) -> None:
        """The head as an .npz (arrays plus a JSON `meta`) written to an open binary file."""
        meta = {
            "format": FORMAT,
            "classes": self.classes,
            "encoder": self.encoder,
            "encoder_version": self.encoder_version,
            "info": self.info,
            "temperature": float(self.temperature),
        }
        np.savez(
            fh,
            weight=self.weight.astype(np.float32),
            bias=self.bias.astype(np.float32),
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            meta=np.array(json.dumps(meta)),
        )

    def save(self, path: Path) -> None:
        """Atomic: a temporary file in the same folder, fsync, rename. Never half a model on disk."""
        atomic_write(path, self.write)

    @classmethod
    def load(cls, source: Path | IO[bytes]) -> Head:
        """From a path or an open binary file (e.g. a member of a model bundle)."""
        with np.load(source, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{source} is not a Light Bulb model head ({meta.get('format')!r})")
            return cls(
                classes=list(meta["classes"]),
                weight=data["weight"],
                bias=data["bias"],
                mean=data["mean"],
                scale=data["scale"],
                encoder=meta["encoder"],
                encoder_version=meta["encoder_version"],
                info=meta.get("info", {}),
                temperature=float(meta.get("temperature", 1.0)),
            )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (p_first - p_second): 0 = one class clearly ahead, 1 = the two likeliest tied."""
    if probs.shape[1] < 2:
        return np.zeros(len(probs))
    top = np.partition(probs, probs.shape[1] - 2, axis=1)[:, -2:]
    return 1.0 - np.abs(top[:, 1] - top[:, 0])


def uncertainty(probs: np.ndarray, rule: str) -> np.ndarray:
    """The queue's ranking score for a project's sampling rule ("margin" or "entropy"), 0..1."""
    return normalised_entropy(probs) if rule == "entropy" else margin_uncertainty(probs)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy divided by log(n_classes): 0 = certain, 1 = no idea, comparable across projects."""
    p = np.clip(probs, 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=1)
    return h / np.log(probs.shape[1]) if probs.shape[1] > 1 else np.zeros(len(probs))


def lsh_buckets(features: np.ndarray, *, bits: int = 10, seed: int = 0) -> np.ndarray:
    """Sign-of-random-projection hash of centred features: near-duplicates land in the same bucket."""
    if len(features) == 0:
        return np.zeros(0, dtype=np.int64)
    mean = features.mean(axis=0, dtype=np.float64).astype(np.float32)
    planes = np.random.default_rng(seed).standard_normal((features.shape[1], bits)).astype(np.float32)
    powers = 1 << np.arange(bits)
    out = np.empty(len(features), dtype=np.int64)
    for start in range(0, len(features), 8192):  # float32 a batch at a time: the matrix may be float16
        x = np.asarray(features[start : start + 8192], dtype=np.float32) - mean
        out[start : start + 8192] = (((x @ planes) > 0) * powers).sum(axis=1)
    return out
