"""A Light Bulb model in one file (`.lbmodel`), and a loader that needs no Django.

Usage, anywhere torch and torchvision / sentence-transformers are installed and this repository's
`modeling/` package is importable (nothing here imports Django):

    from modeling.ml.bundle import Bundle

    bundle = Bundle.load("digits.lbmodel")
    bundle.classes                                 # ["0", "1", ...]
    bundle.predict_proba([open("x.png", "rb").read()])  # images: bytes (or paths); text: strings
    bundle.predict(["a text", "another"])          # the most likely class of each

    from modeling.ml.bundle import load_bundle      # either kind; a sequence tagging bundle (spaCy 3.8):
    load_bundle("ner.lbmodel").predict(["Alice flew to Paris"])  # [[{"start", "end", "label", "text"}]]
    load_bundle("trees.lbmodel").predict(["tile.png"])  # object detection (torch, torchvision):
                                                    # [[{"xmin", "ymin", "xmax", "ymax", "label", "score"}]]

The file is a zip holding `bundle.json` (format, classes, the encoder's name, version and
preprocessing, calibration, TEST metrics, thresholds, where it came from) and `head.npz` (the head's
weights, written by `modeling.ml.head.Head.save`). The encoder's own weights are not copied: they are
the published pretrained weights the name and version identify, loaded by the same `encoders.py` code
the server uses, so scores match the server's to the last bit on the same machine. A version trained on a
project's fine-tuned encoder (the deep tier) carries those weights under `finetuned/`; as with any model
file (sentence-transformers reads the module names in its config), load only bundles you trust.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

import numpy as np

from projects.encoders import REGISTRY, EncoderError

from .encoders import load_encoder
from .head import Head

FORMAT = "lightbulb-bundle/1"

PREPROCESSING = {
    "mobilenet_v2": (
        "RGB (alpha composited on white), resize shorter side to 224 (antialiased), centre-crop 224, "
        "scale to [0, 1], normalise with ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); "
        "features: global-average-pooled 1280-d"
    ),
    "efficientnet_lite0": (
        "RGB (alpha composited on white), resize shorter side to 224 (antialiased), centre-crop 224, "
        "scale to [-1, 1] ((x - 0.5) / 0.5, as TensorFlow's EfficientNet-Lite); EfficientNet-Lite0 body, "
        "global-average-pooled 1280-d"
    ),
    "mobilenet_lite0": "mobilenet_v2 then efficientnet_lite0, each L2-normalised, concatenated: 2560-d",
    "minilm_l6": (
        "text as is (json items: one `key: value` line per field); all-MiniLM-L6-v2 tokenizer, "
        "mean pooling, L2-normalised 384-d"
    ),
    "text_ngrams": (
        "text as is (json items: one `key: value` line per field), first 100,000 characters, lower-cased; "
        "word 1-2-grams (tokens of 2+ word characters) and char_wb 3-5-grams, each hashed (scikit-learn "
        "HashingVectorizer, MurmurHash3, signed) into 1,024 buckets, sign(x) * log(1 + |x|), each block "
        "L2-normalised: 2048-d"
    ),
    "minilm_ngrams": "minilm_l6 (384-d) then text_ngrams (2048-d), concatenated: 2432-d",
}


class BundleError(ValueError):
    """Not a Light Bulb bundle, or one this code cannot run (unknown format or encoder)."""


FINETUNED = "finetuned/"  # in the zip: the fine-tuned encoder's files, when the version was trained on them
# MiniLM's weights are about 90 MB, the two image networks about 25 MB: ten times that is not a model.
MAX_FINETUNED_BYTES = 1024 * 1024 * 1024


def write_bundle(out: IO[bytes], *, head: Head, meta: dict[str, Any], finetuned: Path | None = None) -> None:
    """Write an `.lbmodel` file to `out` (seekable): `meta` (project, version, metrics, ...) plus the head, and
    the fine-tuned encoder's weights (`finetuned`, a folder written by modeling.ml.finetune.save_encoder) when
    the version reads a project's fine-tuned copy rather than the published weights. Streamed file by file:
    a fine-tuned MiniLM is about 90 MB, which the web process should not hold in memory to serve."""
    head_bytes = io.BytesIO()
    head.write(head_bytes)
    spec = REGISTRY.get(head.encoder)
    document = {
        "format": FORMAT,
        "classes": list(head.classes),
        "encoder": {
            "name": head.encoder,
            "version": head.encoder_version,
            "dim": spec.dim if spec else int(head.weight.shape[1]),
            "description": spec.description if spec else "",
            "preprocessing": PREPROCESSING.get(head.encoder, ""),
            **({"finetuned": {"files": FINETUNED, "note": "the encoder's weights fine-tuned on the project's "
                              "TRAIN labels; the preprocessing is the published encoder's"}} if finetuned else {}),
        },
        "calibration": {"method": "temperature scaling", "temperature": float(head.temperature)},
        "head": "multinomial logistic regression: softmax((((x - mean) / scale) @ weight.T + bias) / temperature)",
        **meta,
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bundle.json", json.dumps(document, indent=2, ensure_ascii=False, default=str))
        archive.writestr("head.npz", head_bytes.getvalue())
        if finetuned is not None:
            for file in sorted(p for p in finetuned.rglob("*") if p.is_file()):
                archive.write(file, FINETUNED + file.relative_to(finetuned).as_posix())


SPACY = "spacy/"  # in a sequence tagging bundle: the spaCy pipeline folder of the version
MAX_SPACY_BYTES = 512 * 1024 * 1024  # en_core_web_sm's NER is about 6 MB


def write_span_bundle(out: IO[bytes], *, folder: Path, types: list[str], meta: dict[str, Any]) -> None:
    """A sequence tagging version as an `.lbmodel`: `bundle.json` plus its spaCy pipeline folder under `spacy/`.
    Zip only (no spaCy): the web process serves it."""
    document = {
        **meta,
        "format": FORMAT,
        "kind": "sequence",
        "classes": list(types),
        "encoder": {"name": meta.get("encoder", ""), "version": meta.get("encoder_version", ""),
                    "description": "spaCy NER on en_core_web_sm 3.8's pretrained token features",
                    "preprocessing": "text as is; spaCy's English tokenizer; offsets are characters into the text"},
        "head": "spaCy EntityRecognizer (transition-based), trained for the project's entity types",
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bundle.json", json.dumps(document, indent=2, ensure_ascii=False, default=str))
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, SPACY + file.relative_to(folder).as_posix())


def _members(archive: zipfile.ZipFile, prefix: str, *, limit: int, what: str) -> dict[str, bytes]:
    """The files under `prefix` in a bundle (relative names), refused past `limit` bytes or outside the bundle."""
    members = [i for i in archive.infolist() if i.filename.startswith(prefix) and not i.is_dir()]
    if sum(i.file_size for i in members) > limit:
        raise BundleError(f"the bundle's {what} are over {limit:,} bytes")
    files = {i.filename[len(prefix):]: archive.read(i) for i in members}
    for name in files:
        _safe_name(name)
    return files


def _unpack(owner: object, files: dict[str, bytes]) -> Path:
    """Files written to a temporary folder that goes with `owner` (or at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="lbmodel-"))
    weakref.finalize(owner, shutil.rmtree, folder, True)
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def _safe_name(name: str) -> None:
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.drive or windows.anchor or ".." in posix.parts or ".." in windows.parts:
        raise BundleError(f"the bundle names a file outside itself: {name}")


@dataclass
class SpanBundle:
    """A sequence tagging model: `predict(texts)` gives each text's spans ({"start", "end", "label", "text"})."""

    meta: dict[str, Any]
    files: dict[str, bytes]
    _nlp: Any = None
    _unpacked: Path | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes", []))

    @classmethod
    def load(cls, path: str | Path | io.BytesIO) -> SpanBundle:
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("bundle.json").decode("utf-8"))
                files = _members(archive, SPACY, limit=MAX_SPACY_BYTES, what="spaCy model files")
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"not a Light Bulb model bundle: {exc}") from None
        if meta.get("format") != FORMAT or meta.get("kind") != "sequence":
            raise BundleError("not a sequence tagging bundle (load a classification one with Bundle.load)")
        if "meta.json" not in files:
            raise BundleError("the bundle holds no spaCy pipeline")
        return cls(meta=meta, files=files)

    def pipeline(self):
        """The spaCy pipeline (needs spaCy 3.8 installed), unpacked once to a temporary folder."""
        if self._nlp is None:
            import spacy

            self._unpacked = _unpack(self, self.files)
            self._nlp = spacy.load(self._unpacked)
        return self._nlp

    def predict(self, texts: list[str]) -> list[list[dict]]:
        from .ner import predict

        found = predict(self.pipeline(), [str(t) for t in texts], types=self.classes)
        return [[{**s, "text": t[s["start"]:s["end"]]} for s in spans] for t, spans in zip(texts, found, strict=True)]


DETECTOR = "detector.pt"  # in an object detection bundle: the version's detector (modeling/ml/detection.py)
MAX_DETECTOR_BYTES = 512 * 1024 * 1024  # Faster R-CNN on MobileNetV2 with a 128-channel pyramid is about 60 MB
# Boxes returned when the version chose no threshold on TEST (its proposals cost more than drawing by hand).
DEFAULT_MIN_SCORE = 0.5


def write_box_bundle(out: IO[bytes], *, file: Path, classes: list[str], meta: dict[str, Any]) -> None:
    """An object detection version as an `.lbmodel`: `bundle.json` plus its detector file (torch's zip format,
    tensors and plain data only). Zip only (no torch): the web process serves it, streamed from the file."""
    document = {
        **meta,
        "format": FORMAT,
        "kind": "object_detection",
        "classes": list(classes),
        "encoder": {"name": meta.get("encoder", ""), "version": meta.get("encoder_version", ""),
                    "description": "torchvision Faster R-CNN with a feature pyramid on the ImageNet MobileNetV2 "
                                   "backbone; anchors fitted to the project's boxes",
                    "preprocessing": "RGB (whatever the file's mode), scaled to [0, 1]; the network resizes the "
                                     "image to its own size and answers in the original image's pixels"},
        "head": "Faster R-CNN region proposals and box head, trained for the project's classes",
        "output": '[{"xmin", "ymin", "xmax", "ymax", "label", "score"}] per image, pixels, best first',
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bundle.json", json.dumps(document, indent=2, ensure_ascii=False, default=str))
        archive.write(file, DETECTOR)


@dataclass
class BoxBundle:
    """An object detection model: `predict(images)` gives each image's boxes ({"xmin", "ymin", "xmax", "ymax",
    "label", "score"}, pixels of the image, best first) scoring at least `min_score`: by default the threshold
    the version chose on TEST (the score above which its boxes saved a person time), else DEFAULT_MIN_SCORE."""

    meta: dict[str, Any]
    detector: bytes
    _model: Any = None

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes", []))

    @property
    def threshold(self) -> float:
        chosen = self.meta.get("threshold")
        return float(chosen) if chosen is not None else DEFAULT_MIN_SCORE

    @classmethod
    def load(cls, path: str | Path | io.BytesIO) -> BoxBundle:
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("bundle.json").decode("utf-8"))
                if meta.get("format") != FORMAT or meta.get("kind") != "object_detection":
                    raise BundleError("not an object detection bundle (load any kind with load_bundle)")
                info = archive.getinfo(DETECTOR)
                if info.file_size > MAX_DETECTOR_BYTES:
                    raise BundleError(f"the bundle's detector is over {MAX_DETECTOR_BYTES:,} bytes")
                detector = archive.read(info)
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"not a Light Bulb model bundle: {exc}") from None
        return cls(meta=meta, detector=detector)

    def model(self):
        """The detector (needs torch and torchvision), loaded once."""
        if self._model is None:
            from .detection import load_detector

            try:
                self._model, _meta = load_detector(io.BytesIO(self.detector))
            except (RuntimeError, KeyError, ValueError) as exc:
                raise BundleError(f"the bundle's detector is unreadable: {exc}") from None
        return self._model

    def predict(self, images: list, *, min_score: float | None = None) -> list[list[dict]]:
        """Boxes per image: image bytes or paths."""
        from .detection import detect

        floor = self.threshold if min_score is None else float(min_score)
        raw = [Path(x).read_bytes() if isinstance(x, (str, Path)) else bytes(x) for x in images]
        found = detect(self.model(), raw, classes=self.classes)
        return [[b for b in d.boxes if b["score"] >= floor] for d in found]


def load_bundle(path: str | Path | io.BytesIO) -> Bundle | SpanBundle | BoxBundle:
    """Any kind of `.lbmodel`, by what it says it is."""
    try:
        with zipfile.ZipFile(path) as archive:
            kind = json.loads(archive.read("bundle.json").decode("utf-8")).get("kind")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"not a Light Bulb model bundle: {exc}") from None
    if isinstance(path, io.BytesIO):
        path.seek(0)
    if kind == "sequence":
        return SpanBundle.load(path)
    if kind == "object_detection":
        return BoxBundle.load(path)
    return Bundle.load(path)


@dataclass
class Bundle:
    meta: dict[str, Any]
    head: Head
    finetuned: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes of the fine-tuned weights
    _unpacked: Path | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.head.classes)

    @classmethod
    def load(cls, path: str | Path | io.BytesIO) -> Bundle:
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("bundle.json").decode("utf-8"))
                if meta.get("kind") == "sequence":
                    raise BundleError("a sequence tagging bundle: load it with SpanBundle.load (or load_bundle)")
                if meta.get("kind") == "object_detection":
                    raise BundleError("an object detection bundle: load it with BoxBundle.load (or load_bundle)")
                head_bytes = archive.read("head.npz")
                finetuned = _members(archive, FINETUNED, limit=MAX_FINETUNED_BYTES, what="fine-tuned weights")
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"not a Light Bulb model bundle: {exc}") from None
        if meta.get("format") != FORMAT:
            raise BundleError(f"unsupported bundle format {meta.get('format')!r} (this code reads {FORMAT})")
        try:
            head = Head.load(io.BytesIO(head_bytes))
        except (ValueError, KeyError, OSError) as exc:
            raise BundleError(f"the bundle's head is unreadable: {exc}") from None
        return cls(meta=meta, head=head, finetuned=finetuned)

    def _encoder(self):
        spec = REGISTRY.get(self.head.encoder)
        if spec is None:
            raise BundleError(f"this bundle needs the encoder '{self.head.encoder}', which this code does not have")
        # A fine-tuned copy carries the published version plus its run ("...+ft-p3-r2").
        published = self.head.encoder_version.split("+ft-")[0] if self.finetuned else self.head.encoder_version
        if spec.version != published:
            raise BundleError(
                f"this bundle was trained on {self.head.encoder}@{self.head.encoder_version}; "
                f"this code has version {spec.version}"
            )
        try:
            return load_encoder(self.head.encoder, finetuned=str(self._unpack()) if self.finetuned else None)
        except EncoderError as exc:
            raise BundleError(str(exc)) from None

    def _unpack(self) -> Path:
        """The fine-tuned weights as files (the encoders load folders), once per bundle, in a temporary folder."""
        if self._unpacked is None:
            self._unpacked = _unpack(self, self.finetuned)  # gone with the bundle (or at exit)
        return self._unpacked

    def features(self, inputs: list) -> np.ndarray:
        """Encoder features of raw inputs: image bytes or paths for image models, strings for text models."""
        encoder = self._encoder()
        if "images" in REGISTRY[self.head.encoder].data_types:
            raw = [Path(x).read_bytes() if isinstance(x, (str, Path)) else bytes(x) for x in inputs]
            return encoder.embed(raw)
        return encoder.embed([str(x) for x in inputs])

    def predict_proba(self, inputs: list) -> np.ndarray:
        """Calibrated probabilities, one row per input, columns in `classes` order (rows sum to 1)."""
        if not inputs:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return self.head.predict_proba(self.features(inputs))

    def predict(self, inputs: list) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(inputs).argmax(axis=1)]
