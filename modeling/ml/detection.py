"""The object detection head: torchvision's Faster R-CNN on the provisioned ImageNet MobileNetV2, trained on CPU.

Measured choice (docs/design/label-types.md, D4): on the trees tiles, Faster R-CNN with a feature pyramid over
MobileNetV2's stride 8, 16 and 32 blocks led FCOS and RetinaNet at equal training time, and the image's own size
beat upscaling once training and inference time count. No COCO-trained detector weights exist in any registry
package here, so only the backbone is pretrained; the pyramid, the region proposals and the box head learn from
the project's boxes.

- Anchors are fitted to the project's TRAIN boxes: sizes from the 5–95% quantiles of sqrt(w·h), aspect
  ratios from the 15/50/85% quantiles of h/w, scaled to the size the network sees.
- Augmentation: horizontal and vertical flips (aerial and most product photos have no "up" that flips harm).
- FrozenBatchNorm throughout (a batch of two images cannot estimate BatchNorm statistics), the first blocks
  frozen, AdamW with warm-up and a cosine decay; training stops at `iterations` or `seconds`, whichever is first.
- TEST is scored as COCO does, per class: AP at IoU 0.5 and the mean over IoU 0.5:0.95, all-point
  interpolated, greedy matching by score; mAP is the mean over the classes TEST holds.

Worker and command line only: torch is never imported by the web process.
"""

from __future__ import annotations

import io
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# One image's answer: (path of the image file, [{"xmin", "ymin", "xmax", "ymax", "label"}]).
Example = tuple[Path, Sequence[dict]]
IOU_THRESHOLDS = [round(0.5 + 0.05 * k, 2) for k in range(10)]
FREEZE_BLOCKS = 4  # MobileNetV2's stem and first inverted residuals: generic edges, kept as ImageNet learnt them
FPN_CHANNELS = 128
BATCH = 2
WARMUP = 30
# Scores kept for mAP (it integrates over every threshold); what a person is shown is chosen apart.
SCORE_FLOOR = 0.01
MAX_DETECTIONS = 100


@dataclass
class DetectorResult:
    metrics: dict[str, Any]
    map50: float | None
    seconds: float
    iterations: int


@dataclass
class Detection:
    boxes: list[dict] = field(default_factory=list)  # each with "score"


def _torch():
    import torch  # the worker has set its thread count (modeling/deep.py): one ML worker, on purpose

    return torch


def load_image(path: Path | bytes):
    """An image file (or its bytes) as a float CHW tensor in [0, 1] (RGB, whatever the file's mode)."""
    from PIL import Image

    torch = _torch()
    with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


Anchors = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]


def fit_anchors(boxes: Sequence[dict], *, scale: float = 1.0) -> Anchors:
    """Anchor sizes for three pyramid levels (two each) plus the pool level, and three aspect ratios (h/w), from
    the TRAIN boxes' quantiles; a project with too few boxes gets sizes spread over typical objects."""
    if len(boxes) >= 2:
        w = np.array([b["xmax"] - b["xmin"] for b in boxes], dtype=float)
        h = np.array([b["ymax"] - b["ymin"] for b in boxes], dtype=float)
        sizes = np.quantile(np.sqrt(w * h) * scale, np.linspace(0.05, 0.95, 6))
        ratios = np.quantile(h / w, [0.15, 0.5, 0.85])
    else:
        sizes = np.array([16, 24, 32, 48, 64, 96], dtype=float) * scale
        ratios = np.array([0.5, 1.0, 2.0])
    sizes = np.maximum(sizes, 4.0)
    levels = [tuple(round(float(s), 1) for s in sizes[i * 2:(i + 1) * 2]) for i in range(3)]
    levels.append(tuple(round(2 * s, 1) for s in levels[-1]))  # the stride-64 pool level
    return tuple(levels), tuple(round(float(r), 2) for r in ratios)


def build_detector(*, classes: Sequence[str], anchor_sizes, aspect_ratios, size: int, pretrained: bool = True):
    """Faster R-CNN + FPN on MobileNetV2 (ImageNet weights from TORCH_HOME, provisioned at install)."""
    import torchvision
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops import misc as misc_nn_ops
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    _torch()
    mobilenet = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1" if pretrained else None,
                                                norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    features = mobilenet.features[:18]
    for block in features[:FREEZE_BLOCKS]:
        for p in block.parameters():
            p.requires_grad_(False)
    # Strides 8, 16 and 32: blocks 6 (32 channels), 13 (96) and 17 (320).
    backbone = BackboneWithFPN(features, {"6": "0", "13": "1", "17": "2"}, [32, 96, 320], FPN_CHANNELS,
                               extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes), (tuple(aspect_ratios),) * len(anchor_sizes))
    return FasterRCNN(
        backbone, num_classes=len(classes) + 1, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300, rpn_batch_size_per_image=256, box_batch_size_per_image=128,
        box_score_thresh=SCORE_FLOOR, box_detections_per_img=MAX_DETECTIONS,
        min_size=size, max_size=size, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )


def _target(boxes: Sequence[dict], classes: Sequence[str]):
    torch = _torch()
    index = {c: n + 1 for n, c in enumerate(classes)}  # 0 is the background
    kept = [b for b in boxes if b.get("label") in index]
    coords = torch.tensor([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in kept], dtype=torch.float32)
    return coords.reshape(-1, 4), torch.tensor([index[b["label"]] for b in kept], dtype=torch.int64)


def _flip(image, coords, rng: random.Random):
    _, height, width = image.shape
    coords = coords.clone()
    if rng.random() < 0.5:
        image = image.flip(-1)
        coords[:, [0, 2]] = width - coords[:, [2, 0]]
    if rng.random() < 0.5:
        image = image.flip(-2)
        coords[:, [1, 3]] = height - coords[:, [3, 1]]
    return image, coords


def median_side(paths: Sequence[Path]) -> float:
    """The images' median longer side, read from their headers (nothing decoded)."""
    from PIL import Image

    sides = []
    for path in paths:
        with Image.open(path) as im:
            sides.append(max(im.size))
    return float(np.median(sides)) if sides else 512.0


def network_size(side: float) -> int:
    """The side the network resizes images to: the TRAIN images' median longer side, within 256..1024 (their own
    size where it fits: upscaling 400 px tiles to 600 bought 0.02 mAP for 3× the time, D4's measurement)."""
    return int(min(1024, max(256, side)))


def train_detector(
    *, classes: Sequence[str], train: Sequence[Example], test: Sequence[Example], out_path: Path, iterations: int,
    seconds: float, seed: int = 0, lr: float = 1e-3, on_step: Callable[[int], object] | None = None,
) -> DetectorResult:
    """Train for `iterations` batches of two images or until `seconds` have gone, score TEST, and write the
    detector to `out_path` (through a temporary sibling: a reader never sees half a file)."""
    torch = _torch()
    started = time.monotonic()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    # Images are read from disk batch by batch (decoding is ~1% of a step's time): a project of thousands of
    # large photos would not fit in memory as tensors.
    paths = [path for path, _ in train]
    targets = [_target(boxes, classes) for _, boxes in train]
    side = median_side(paths)
    size = network_size(side)
    scale = size / max(side, 1.0)  # anchors are in the pixels the network sees
    anchor_sizes, ratios = fit_anchors([b for _, bs in train for b in bs if b.get("label") in classes], scale=scale)
    model = build_detector(classes=classes, anchor_sizes=anchor_sizes, aspect_ratios=ratios, size=size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    total = max(1, iterations)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    model.train()
    order: list[int] = []
    done = 0
    skipped = 0
    while done < total and (seconds <= 0 or time.monotonic() - started < seconds):
        if len(order) < BATCH:
            order += rng.sample(range(len(paths)), len(paths))
        batch, order = order[:BATCH], order[BATCH:]
        inputs, labels = [], []
        for n in batch:
            image, coords = _flip(load_image(paths[n]), targets[n][0], rng)
            inputs.append(image)
            labels.append({"boxes": coords, "labels": targets[n][1]})
        losses = model(inputs, labels)
        loss = sum(losses.values())
        optimizer.zero_grad()
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
        else:
            skipped += 1  # a diverging step is dropped, not learnt from
        schedule.step()
        done += 1
        if on_step is not None and done % 10 == 0:
            on_step(done)
    trained = time.monotonic() - started
    meta = {"classes": list(classes), "anchor_sizes": [list(s) for s in anchor_sizes], "aspect_ratios": list(ratios),
            "size": size}
    metrics: dict[str, Any] = {"kind": "object_detection", "iterations": done, "skipped_steps": skipped,
                               "network_size": size, "anchor_sizes": meta["anchor_sizes"],
                               "aspect_ratios": meta["aspect_ratios"]}
    if test:
        model.eval()
        predictions = detect(model, [path for path, _ in test], classes=classes)
        gold = [boxes for _, boxes in test]
        metrics["boxes"] = score_detections(gold, predictions, classes=classes)
        # Which proposals to show and what reviewing them costs, on TEST: the queue and the screen read it.
        choice = choose_threshold(predictions, gold)
        metrics["review"] = {**choice, "bins": review_bins(predictions, gold, threshold=choice["threshold"])}
    _save(out_path, model, meta)
    overall = (metrics.get("boxes") or {}).get("overall") or {}
    return DetectorResult(metrics=metrics, map50=overall.get("map50"), seconds=round(trained, 2), iterations=done)


def _save(path: Path, model, meta: dict) -> None:
    torch = _torch()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"meta": meta, "state": model.state_dict()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_detector(path: Path | io.BytesIO):
    """A saved detector (a file, or its bytes in a buffer), ready to detect (eval mode), and its meta (classes,
    anchors, size). `weights_only`: the file is tensors and plain data, never pickled code."""
    torch = _torch()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    meta = saved["meta"]
    model = build_detector(classes=meta["classes"], anchor_sizes=meta["anchor_sizes"],
                           aspect_ratios=meta["aspect_ratios"], size=meta["size"], pretrained=False)
    model.load_state_dict(saved["state"])
    model.eval()
    return model, meta


def detect(model, paths: Sequence[Path | bytes], *, classes: Sequence[str]) -> list[Detection]:
    """Each image's boxes (pixels of the original image) with their scores, best first (files or their bytes)."""
    torch = _torch()
    out: list[Detection] = []
    model.eval()
    with torch.no_grad():
        for path in paths:
            result = model([load_image(path)])[0]
            boxes = []
            for (x1, y1, x2, y2), score, label in zip(result["boxes"].tolist(), result["scores"].tolist(),
                                                      result["labels"].tolist(), strict=True):
                # A sliver under a pixel is not a box a person could keep (DetectionKind refuses it).
                if 1 <= label <= len(classes) and x2 - x1 >= 1 and y2 - y1 >= 1:
                    boxes.append({"xmin": round(x1, 2), "ymin": round(y1, 2), "xmax": round(x2, 2),
                                  "ymax": round(y2, 2), "label": classes[label - 1], "score": round(score, 4)})
            out.append(Detection(boxes=boxes))
    return out


def _iou(a: dict, b: dict) -> float:
    w = min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"])
    h = min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda r: (r["xmax"] - r["xmin"]) * (r["ymax"] - r["ymin"])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def average_precision(hits: Sequence[bool], scores: Sequence[float], positives: int) -> float | None:
    """Area under the precision envelope over recall (all-point interpolation, as VOC 2010+ and COCO's
    integral); None when there is nothing to find."""
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    tp = np.asarray(hits, dtype=float)[order] if len(hits) else np.zeros(0)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / positives
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def score_detections(gold: Sequence[Sequence[dict]], predicted: Sequence[Detection], *, classes: Sequence[str]
                     ) -> dict[str, Any]:
    """Per class and overall: AP@0.5, AP@0.5:0.95 (the mean over IoU 0.5, 0.55 … 0.95), how many boxes TEST holds
    and how many the model drew above the floor. Greedy matching: each detection, best score first, takes the
    unmatched gold box of its class it overlaps most, if the overlap reaches the threshold."""
    per_class: dict[str, dict[str, Any]] = {}
    for name in classes:
        positives = sum(1 for boxes in gold for b in boxes if b["label"] == name)
        aps: list[float] = []
        drawn = 0
        for threshold in IOU_THRESHOLDS:
            hits: list[bool] = []
            scores: list[float] = []
            for truth, found in zip(gold, predicted, strict=True):
                mine = [b for b in truth if b["label"] == name]
                used = [False] * len(mine)
                for det in sorted((d for d in found.boxes if d["label"] == name), key=lambda d: -d["score"]):
                    best, best_iou = -1, threshold
                    for k, g in enumerate(mine):
                        overlap = _iou(det, g)
                        if not used[k] and overlap >= best_iou:
                            best, best_iou = k, overlap
                    if best >= 0:
                        used[best] = True
                    hits.append(best >= 0)
                    scores.append(det["score"])
            drawn = len(scores)
            ap = average_precision(hits, scores, positives)
            if ap is not None:
                aps.append(ap)
        per_class[name] = {"ap50": aps[0] if aps else None, "ap50_95": float(np.mean(aps)) if aps else None,
                           "support": positives, "predicted": drawn}
    present = [v for v in per_class.values() if v["ap50"] is not None]
    overall = {
        "map50": float(np.mean([v["ap50"] for v in present])) if present else None,
        "map50_95": float(np.mean([v["ap50_95"] for v in present])) if present else None,
        "support": sum(v["support"] for v in per_class.values()),
        "images": len(gold),
    }
    return {"per_class": per_class, "overall": overall}


# --------------------------------------------------------------------------------------------------
# What a person's time goes on: the cost model of issue 24, the queue's uncertainty and the review rule
# --------------------------------------------------------------------------------------------------

LOOK_SECONDS = 1.0  # looking at an image (and saving it)
DRAW_SECONDS = 7.0  # a box drawn by hand
ACCEPT_SECONDS = 1.0  # a proposed box accepted as it stands
ADJUST_SECONDS = 3.0  # a proposed box moved, resized or given another class
REMOVE_SECONDS = 1.0  # a proposed box removed
# A proposed box this close to a true one of its class is right as it stands; one overlapping a true box at least
# ADJUST_IOU is adjusted onto it (3 s beats removing it and drawing the object, 8 s); below that it is removed.
ACCEPT_IOU = 0.7
ADJUST_IOU = 0.3
# Detections below this score are the model saying "no object here" with confidence; the queue's uncertainty is
# about those above it.
DECISION_FLOOR = 0.05
REVIEW_BINS = 5


def hand_seconds(gold: Sequence[dict]) -> float:
    """Modeled time to box an image with nothing proposed."""
    return LOOK_SECONDS + DRAW_SECONDS * len(gold)


@dataclass
class ReviewCost:
    """What a person does to turn the proposed boxes into the right ones."""

    accepted: int = 0
    adjusted: int = 0
    removed: int = 0
    drawn: int = 0

    @property
    def seconds(self) -> float:
        return (LOOK_SECONDS + ACCEPT_SECONDS * self.accepted + ADJUST_SECONDS * self.adjusted
                + REMOVE_SECONDS * self.removed + DRAW_SECONDS * self.drawn)

    @property
    def clean(self) -> bool:
        """Every proposed box right and nothing missed: the image is accepted with one key."""
        return self.adjusted == self.removed == self.drawn == 0


def _iou_matrix(a: Sequence[dict], b: Sequence[dict]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    p = np.array([[x["xmin"], x["ymin"], x["xmax"], x["ymax"]] for x in a], dtype=float)
    g = np.array([[x["xmin"], x["ymin"], x["xmax"], x["ymax"]] for x in b], dtype=float)
    w = np.clip(np.minimum(p[:, None, 2], g[None, :, 2]) - np.maximum(p[:, None, 0], g[None, :, 0]), 0, None)
    h = np.clip(np.minimum(p[:, None, 3], g[None, :, 3]) - np.maximum(p[:, None, 1], g[None, :, 1]), 0, None)
    inter = w * h
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    return inter / np.maximum(area_p[:, None] + area_g[None, :] - inter, 1e-9)


def review_cost(shown: Sequence[dict], gold: Sequence[dict]) -> ReviewCost:
    """The edits from the proposed boxes to the true ones: pairs matched greedily by overlap (the largest first),
    a pair at ACCEPT_IOU or more with the same class accepted, any other pair at ADJUST_IOU or more adjusted, the
    proposals left over removed and the true boxes left over drawn."""
    iou = _iou_matrix(shown, gold)
    cost = ReviewCost()
    used_p: set[int] = set()
    used_g: set[int] = set()
    if iou.size:
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < ADJUST_IOU:
                break
            if i in used_p or j in used_g:
                continue
            used_p.add(i)
            used_g.add(j)
            if iou[i, j] >= ACCEPT_IOU and shown[i]["label"] == gold[j]["label"]:
                cost.accepted += 1
            else:
                cost.adjusted += 1
    cost.removed = len(shown) - len(used_p)
    cost.drawn = len(gold) - len(used_g)
    return cost


def shown(boxes: Sequence[dict], threshold: float | None) -> list[dict]:
    """The detections a person is shown: those at or above the version's threshold (none without one)."""
    if threshold is None:
        return []
    return [d for d in boxes if d["score"] >= threshold]


def choose_threshold(predicted: Sequence[Detection], gold: Sequence[Sequence[dict]]) -> dict[str, Any]:
    """The score above which proposals save a person the most time on TEST (which the version never trained on):
    the threshold with the least modeled review time over the TEST images, the higher one on a tie. None when
    no threshold beats boxing every image by hand: the screen then proposes nothing."""
    hand = sum(hand_seconds(g) for g in gold)
    candidates = sorted({round(d["score"], 2) for p in predicted for d in p.boxes if d["score"] >= DECISION_FLOOR},
                        reverse=True)
    best: float | None = None
    best_seconds = hand
    for t in candidates:
        seconds = sum(review_cost(shown(p.boxes, t), g).seconds for p, g in zip(predicted, gold, strict=True))
        if seconds < best_seconds - 1e-9:
            best, best_seconds = t, seconds
    return {"threshold": best, "review_seconds": round(best_seconds, 2), "hand_seconds": round(hand, 2),
            "images": len(gold)}


def image_confidence(boxes: Sequence[dict]) -> tuple[float, float]:
    """How sure the model is of an image: its least confident decision (over detections scoring DECISION_FLOOR or
    more, max(s, 1 - s): a box at 0.5 is a coin toss, one at 0.95 or 0.05 is not) and the mean binary entropy
    (in bits) of those decisions; (1.0, 0.0) when it found nothing even faintly."""
    scores = np.array([d["score"] for d in boxes if d["score"] >= DECISION_FLOOR], dtype=float)
    if not len(scores):
        return 1.0, 0.0
    s = np.clip(scores, 1e-6, 1 - 1e-6)
    entropy = -(s * np.log2(s) + (1 - s) * np.log2(1 - s))
    return float(np.maximum(scores, 1 - scores).min()), float(entropy.mean())


def review_bins(predicted: Sequence[Detection], gold: Sequence[Sequence[dict]], *, threshold: float | None
                ) -> list[dict]:
    """What reviewing costs at each confidence, on TEST: the images split by `image_confidence` into up to
    REVIEW_BINS groups of equal size (ten images at least each), with the mean modeled review and hand times and
    the share a reviewer would accept as it stands, as its posterior mean under a uniform prior ((clean + 1) /
    (images + 2)), so a lucky draw on few TEST images does not send a pool to review."""
    rows = sorted(((image_confidence(p.boxes)[0], review_cost(shown(p.boxes, threshold), g), g)
                   for p, g in zip(predicted, gold, strict=True)), key=lambda r: r[0])
    if not rows:
        return []
    n_bins = max(1, min(REVIEW_BINS, len(rows) // 10))
    bins = []
    for k in range(n_bins):
        part = rows[k * len(rows) // n_bins:(k + 1) * len(rows) // n_bins]
        clean = sum(1 for _, c, _ in part if c.clean)
        bins.append({"low": part[0][0], "high": part[-1][0], "images": len(part), "clean": clean,
                     "clean_share": (clean + 1) / (len(part) + 2),
                     "mean_review_seconds": sum(c.seconds for _, c, _ in part) / len(part),
                     "mean_hand_seconds": sum(hand_seconds(g) for _, _, g in part) / len(part)})
    return bins


def _bin(bins: Sequence[dict], confidence: float) -> dict | None:
    return next((b for b in bins if confidence <= b["high"]), bins[-1] if bins else None)


def review_is_cheaper(bins: Sequence[dict], confidence: float) -> bool:
    """Whether, at this confidence, fixing the proposed boxes is expected to cost less than boxing by hand: the
    screen shows an image's proposals only then."""
    chosen = _bin(bins, confidence)
    return chosen is not None and chosen["mean_review_seconds"] < chosen["mean_hand_seconds"]


def goes_to_review(bins: Sequence[dict], confidence: float, *, floor: float) -> bool:
    """The cost rule: an image goes to review when reviewing its proposals is expected to be quicker than boxing
    it by hand and reviewers would accept at least `floor` of such images as they stand."""
    chosen = _bin(bins, confidence)
    return chosen is not None and review_is_cheaper(bins, confidence) and chosen["clean_share"] >= floor
