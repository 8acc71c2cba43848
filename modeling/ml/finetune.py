"""The deep tier: fine-tune a project's pretrained encoder on its own TRAIN labels (no Django here).

Images (fastbook, "from model to production"): the encoder's network(s) with a small classification head,
trained on augmented crops (RandomResizedCrop, flips, small rotations, lighting); first one epoch with the
body frozen (only the head and the batch-norm statistics learn), then everything, with discriminative
learning rates (the early half of each body 10x below the head, the late half sqrt(10)x) under a one-cycle
schedule. Text (SetFit): MiniLM trained contrastively on pairs of TRAIN texts, same class towards cosine 1,
different classes towards 0; the hashed n-grams beside it have nothing to fit.

Only the encoder is kept: the product's own head (`training.train_head`, calibration, thresholds) is then
fitted on the fine-tuned features exactly as on the pretrained ones, so a fine-tuned model is used, served
and exported like any other version. `compare` says on TEST whether it is better (an exact McNemar test).

torch is imported inside the functions; importing this module costs numpy only.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .encoders import IMAGE_NETWORKS, IMAGE_WEIGHTS, MINILM_DIR, TEXT_MODEL_ENCODERS

# fastai's fine_tune: a base lr for the frozen epoch, half of it once unfrozen, spread over the layer groups
# (fastai: down to base / 100); AdamW with weight decay 0.01; label smoothing as its recipes use. Measured at 500
# labels (docs/benchmarks.md): base 4e-3 spread down to / 10 did 0.3-0.8 points better than 2e-3 and / 100 on
# fashion_mnist_2k and emoji: these images are far from ImageNet's, so the early layers need to move too.
BASE_LR = 4e-3
LR_MULT = 10.0
WEIGHT_DECAY = 0.01
LABEL_SMOOTHING = 0.1
IMAGE_SIZE = 224
# Decoded images are kept at most this large (shorter side) between epochs: crops of 224 need no more.
DECODE_SIDE = 256
TEXT_LR = 2e-5
TEXT_BATCH = 16
# SetFit's 20 iterations of one positive and one negative pair per text, bounded for two CPU cores.
TEXT_ITERATIONS = 20
TEXT_MAX_PAIRS = 4000


class Cancelled(Exception):
    """The owner cancelled the run, or the worker is stopping: nothing is kept."""


@dataclass
class Progress:
    """What the model card shows while a run goes: the phase, epoch i of n, the running loss, time left."""

    phase: str
    epoch: int
    epochs: int
    loss: float | None
    fraction: float  # of the whole training, 0..1
    seconds_left: float | None


ProgressFn = Callable[[Progress], None]


def supports(encoder: str) -> bool:
    return encoder in IMAGE_NETWORKS or encoder in TEXT_MODEL_ENCODERS


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def decode_rgb(raw: bytes):
    """uint8 CxHxW tensor, alpha composited on white as the encoders do, shorter side at most DECODE_SIDE."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from .encoders import rgb_image

    rgb = rgb_image(raw)
    if min(rgb.size) > DECODE_SIDE:
        scale = DECODE_SIDE / min(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return F.pil_to_tensor(rgb)


def _augment():
    import torch
    from torchvision.transforms import v2 as T

    # fastai's aug_transforms, in torchvision's words: zoom/crop, flip, rotate up to 10 degrees, lighting 0.2.
    return T.Compose([
        T.RandomResizedCrop(IMAGE_SIZE, scale=(0.35, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomRotation(10, fill=255),
        T.ColorJitter(brightness=0.2, contrast=0.2),
        T.ToDtype(torch.float32, scale=True),
    ])


def _network_module(encoder: str, classes: int):
    """The encoder's network(s) on [0, 1] pixels, each with its own normalisation, and a classifier on
    their features (combined as the encoder combines them: one network's pooled features as they are,
    two L2-normalised and concatenated)."""
    import torch

    from .encoders import _LOADERS, image_network

    names = IMAGE_NETWORKS[encoder]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bodies = torch.nn.ModuleDict({name: image_network(name) for name in names})
            for name in names:
                cls = _LOADERS[name]
                self.register_buffer(f"mean_{name}", torch.tensor(cls.MEAN).view(1, 3, 1, 1))  # type: ignore[attr-defined]
                self.register_buffer(f"std_{name}", torch.tensor(cls.STD).view(1, 3, 1, 1))  # type: ignore[attr-defined]
            dim = 1280 * len(names)
            self.head = torch.nn.Sequential(
                torch.nn.BatchNorm1d(dim), torch.nn.Dropout(0.25), torch.nn.Linear(dim, classes)
            )

        def features(self, x):
            parts = []
            for name, body in self.bodies.items():
                f = body((x - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}"))
                parts.append(torch.nn.functional.normalize(f, dim=1) if len(names) > 1 else f)
            return torch.cat(parts, dim=1)

        def forward(self, x):
            return self.head(self.features(x))

    return Net()


def _groups(net, lr: float, lr_mult: float) -> list[dict]:
    """Parameter groups, from the input up: each body's first half (by parameter count) at lr / lr_mult, its
    second half at lr / sqrt(lr_mult), the head at lr (fastai's `slice(lr / lr_mult, lr)` over three groups)."""
    early: list = []
    late: list = []
    for body in net.bodies.values():
        params = [p for p in body.parameters()]
        sizes = np.cumsum([p.numel() for p in params])
        half = sizes[-1] / 2
        for p, upto in zip(params, sizes, strict=True):
            (early if upto <= half else late).append(p)
    return [
        {"params": early, "lr": lr / lr_mult},
        {"params": late, "lr": lr / math.sqrt(lr_mult)},
        {"params": list(net.head.parameters()), "lr": lr},
    ]


@dataclass
class ImageResult:
    states: dict  # network name -> state dict (what `encoders.load_encoder(..., finetuned=)` reads)
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    seconds: float = 0.0


def finetune_images(
    encoder: str, images: Sequence[bytes], labels: np.ndarray, classes: int, *, epochs: int = 4,
    frozen_epochs: int = 1, batch_size: int = 16, seed: int = 0, base_lr: float = BASE_LR, lr_mult: float = LR_MULT,
    progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
) -> ImageResult:
    """Fine-tune the encoder's network(s) on (image bytes, class index) pairs; raises Cancelled on a stop."""
    import torch

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    decoded = [decode_rgb(raw) for raw in images]
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    augment = _augment()
    net = _network_module(encoder, classes).to(memory_format=torch.channels_last)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    steps_per_epoch = max(1, math.ceil(len(decoded) / batch_size))
    total_steps = steps_per_epoch * (frozen_epochs + epochs)
    done_steps = 0
    result = ImageResult(states={})

    def run(phase: str, n_epochs: int, optimiser, scheduler, frozen: bool, first_epoch: int) -> None:
        nonlocal done_steps
        for epoch in range(n_epochs):
            net.train()
            order = rng.permutation(len(decoded))
            # A last batch of one would break batch norm; fold it into the one before.
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            if len(batches) > 1 and len(batches[-1]) < 2:
                batches[-2] = np.concatenate([batches[-2], batches.pop()])
            total, seen = 0.0, 0
            for idx in batches:
                if should_stop is not None and should_stop():
                    raise Cancelled("stopped")
                x = torch.stack([augment(decoded[i]) for i in idx]).contiguous(memory_format=torch.channels_last)
                if frozen:
                    with torch.no_grad():
                        features = net.features(x)
                    logits = net.head(features)
                else:
                    logits = net(x)
                loss = loss_fn(logits, y[idx])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                total += loss.item() * len(idx)
                seen += len(idx)
                done_steps += 1
                if progress is not None:
                    elapsed = time.perf_counter() - started
                    left = elapsed / done_steps * (total_steps - done_steps)
                    progress(Progress(phase=phase, epoch=first_epoch + epoch + 1, epochs=frozen_epochs + epochs,
                                      loss=total / seen, fraction=done_steps / total_steps, seconds_left=left))
            result.losses.append(total / max(seen, 1))

    if frozen_epochs:
        for p in net.bodies.parameters():
            p.requires_grad_(False)
        optimiser = torch.optim.AdamW(net.head.parameters(), lr=base_lr, weight_decay=WEIGHT_DECAY)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=base_lr, total_steps=steps_per_epoch * frozen_epochs, pct_start=0.25
        )
        run("training the head (body frozen)", frozen_epochs, optimiser, scheduler, True, 0)
        for p in net.bodies.parameters():
            p.requires_grad_(True)
    if epochs:
        lr = base_lr / 2
        groups = _groups(net, lr, lr_mult)
        optimiser = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=[g["lr"] for g in groups], total_steps=steps_per_epoch * epochs, pct_start=0.25
        )
        run("fine-tuning the whole network", epochs, optimiser, scheduler, False, frozen_epochs)
    net.eval()
    result.states = {name: {k: v.detach().clone() for k, v in body.state_dict().items()}
                     for name, body in net.bodies.items()}
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------------
# Text (SetFit-style contrastive fine-tuning of MiniLM)
# --------------------------------------------------------------------------------------------------


def contrastive_pairs(labels: np.ndarray, *, seed: int = 0, iterations: int = TEXT_ITERATIONS,
                      max_pairs: int = TEXT_MAX_PAIRS) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs as SetFit draws them: per iteration, for every text one partner of its class
    (target 1) and one of another class (target 0); as many iterations as fit in `max_pairs`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    rounds = max(1, min(iterations, max_pairs // max(2 * len(labels), 1)))
    pairs: list[tuple[int, int, float]] = []
    for _ in range(rounds):
        for i in rng.permutation(len(labels)):
            same = by_class[labels[i]]
            if len(same) > 1:
                j = int(rng.choice(same[same != i]))
                pairs.append((int(i), j, 1.0))
            others = np.flatnonzero(labels != labels[i])
            if len(others):
                pairs.append((int(i), int(rng.choice(others)), 0.0))
    order = rng.permutation(len(pairs))[:max_pairs]
    return [pairs[k] for k in order]


@dataclass
class TextResult:
    model: object  # the fine-tuned SentenceTransformer
    pairs: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def finetune_text(
    texts: Sequence[str], labels: np.ndarray, *, model_dir: Path, seed: int = 0, max_pairs: int = TEXT_MAX_PAIRS,
    progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
) -> TextResult:
    """MiniLM (from `model_dir`) trained with a cosine-similarity loss on SetFit's pairs, one epoch, AdamW with
    a linear warm-up over the first tenth and a linear decay."""
    import torch
    from sentence_transformers import SentenceTransformer

    from .encoders import configure_torch

    configure_torch()
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = SentenceTransformer(str(model_dir), device="cpu")
    pairs = contrastive_pairs(np.asarray(labels), seed=seed, max_pairs=max_pairs)
    steps = max(1, math.ceil(len(pairs) / TEXT_BATCH))
    optimiser = torch.optim.AdamW(model.parameters(), lr=TEXT_LR, weight_decay=WEIGHT_DECAY)
    warm = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(steps - warm, 1))
    )
    model.train()
    result = TextResult(model=model, pairs=len(pairs))
    total, seen = 0.0, 0

    def embed(batch: list[str]):
        features = model.tokenize(batch)
        return model(features)["sentence_embedding"]

    for step in range(steps):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped")
        chunk = pairs[step * TEXT_BATCH : (step + 1) * TEXT_BATCH]
        a = embed([texts[i] for i, _, _ in chunk])
        b = embed([texts[j] for _, j, _ in chunk])
        target = torch.tensor([t for _, _, t in chunk], dtype=torch.float32)
        loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(a, b), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        total += loss.item() * len(chunk)
        seen += len(chunk)
        if progress is not None:
            elapsed = time.perf_counter() - started
            progress(Progress(phase="contrastive pairs", epoch=1, epochs=1, loss=total / seen,
                              fraction=(step + 1) / steps, seconds_left=elapsed / (step + 1) * (steps - step - 1)))
    model.eval()
    result.losses.append(total / max(seen, 1))
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------------
# Saving (a folder written whole under a temporary name, then renamed: never half a model)
# --------------------------------------------------------------------------------------------------


def save_encoder(result: ImageResult | TextResult, folder: Path) -> Path:
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        if isinstance(result, ImageResult):
            torch.save(result.states, tmp / IMAGE_WEIGHTS)
        else:
            result.model.save(str(tmp / MINILM_DIR))  # type: ignore[attr-defined]
        if folder.exists():
            shutil.rmtree(folder)  # a killed earlier attempt of the same run
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0


# --------------------------------------------------------------------------------------------------
# Is it better? A paired comparison on the same TEST items
# --------------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    test_items: int
    current_accuracy: float
    candidate_accuracy: float
    only_candidate_right: int  # McNemar's discordant pairs
    only_current_right: int
    p_value: float  # one-sided exact McNemar: the chance of this many wins or more if neither were better
    better: bool

    def as_dict(self) -> dict:
        return {
            "test_items": self.test_items, "current_accuracy": self.current_accuracy,
            "candidate_accuracy": self.candidate_accuracy, "only_candidate_right": self.only_candidate_right,
            "only_current_right": self.only_current_right, "p_value": self.p_value, "better": self.better,
            "test": "exact McNemar, one-sided", "alpha": ALPHA,
        }


ALPHA = 0.05


def mcnemar_p(wins: int, losses: int) -> float:
    """P(X >= wins) for X ~ Binomial(wins + losses, 1/2): how often a model no better than the other would win
    at least this many of the items on which exactly one of the two is right."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n)


def compare(current_right: np.ndarray, candidate_right: np.ndarray, *, alpha: float = ALPHA) -> Comparison:
    """Per TEST item, was each model right? The candidate is better when it wins significantly more of the
    items the two disagree on (exact McNemar, one-sided at `alpha`)."""
    a = np.asarray(current_right, dtype=bool)
    b = np.asarray(candidate_right, dtype=bool)
    wins, losses = int((b & ~a).sum()), int((a & ~b).sum())
    p = mcnemar_p(wins, losses)
    n = len(a)
    return Comparison(
        test_items=n, current_accuracy=float(a.mean()) if n else 0.0, candidate_accuracy=float(b.mean()) if n else 0.0,
        only_candidate_right=wins, only_current_right=losses, p_value=p, better=bool(n and wins > losses and p < alpha),
    )
