"""Deterministic synthetic text-guided chest-radiograph segmentation dataset.

The generator writes the LViT / QaTa-COV19 release layout so the same loader reads both::

    ROOT/Train_Folder/img/train_00000.png              8-bit gray image
    ROOT/Train_Folder/labelcol/mask_train_00000.png    8-bit mask, values {0, 255}
    ROOT/Train_Folder/Train_text.xlsx                  columns: Image (mask file name), Description
    ROOT/Val_Folder/...  ROOT/Test_Folder/...          same, with Val_text.xlsx / Test_text.xlsx
    ROOT/meta.json                                     config, version, per-case zones and geometry

Design
------
Each image shows two bright elliptical lung fields on a dark background, with blurred-noise
texture, faint rib stripes and pixel noise. Every lung is cut into upper / middle / lower thirds
of its vertical extent, giving six *zones* ``(vertical, side)``. An image holds 0-3 *target*
lesions (ground-glass opacities: soft-edged elliptical brightenings) in distinct zones, plus 1-2
*distractor* lesions in zones without a target. Targets and distractors are drawn by the very
same procedure, so they look identical; only the targets are in the mask and only the target
zones are named in the text. A model that ignores the text therefore cannot tell which bright
blobs to segment, while a text-aware one can.

Each lesion profile is ``sigmoid((1 - d) / w)`` of its normalised elliptical radius ``d``, so the
mask (``d <= 1``) is exactly the half-maximum contour of the visible bump. Lesions are placed by
rejection sampling so that their mask lies entirely inside one zone.

Laterality convention
---------------------
``convention="radiographic"`` (default) follows real chest X-rays and the QaTa-COV19 texts: the
patient's LEFT lung is displayed on the image's RIGHT side. ``convention="plain"`` makes "left"
mean the left half of the image. The mapping side -> image half lives in :func:`_image_half`
alone; :func:`zone_map` is the single place that turns geometry into per-pixel zones.

Determinism: case ``i`` of split ``k`` uses ``np.random.default_rng([seed, k, i])``, so changing
a split size never changes other cases. PNGs are byte-identical across runs; the xlsx sheets have
identical content (openpyxl stamps a modification time in the file's metadata).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from tmc_lightning.utils import atomic_folder

GENERATOR_VERSION = "1"
VERTICAL = ("upper", "middle", "lower")
SIDES = ("left", "right")
CONVENTIONS = ("radiographic", "plain")
SPLITS = (("train", "Train"), ("val", "Val"), ("test", "Test"))
Zone = tuple[str, str]

N_TARGET_PROBS = (0.08, 0.42, 0.36, 0.14)  # P(0..3 targets); mean 1.56
N_DISTRACTOR_PROBS = (0.44, 0.56)  # P(1 or 2 distractors); mean 1.56 -> pixel balance
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")


@dataclass(frozen=True)
class SyntheticConfig:
    n_train: int = 1000
    n_val: int = 200
    n_test: int = 200
    image_size: int = 128
    seed: int = 0
    convention: str = "radiographic"

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {self.convention!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        for key in ("n_train", "n_val", "n_test"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")

    def fingerprint(self) -> str:
        payload = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- text


def _zone_index(zone: Zone) -> int:
    vertical, side = zone
    if vertical not in VERTICAL or side not in SIDES:
        raise ValueError(f"invalid zone {zone!r}")
    return VERTICAL.index(vertical) * 2 + SIDES.index(side)


def _zone_of_index(index: int) -> Zone:
    return (VERTICAL[index // 2], SIDES[index % 2])


def _sorted_zones(zones: Iterable[Zone]) -> list[Zone]:
    unique = {(str(v), str(s)) for v, s in zones}
    for zone in unique:
        _zone_index(zone)  # validate
    return sorted(unique, key=lambda z: (SIDES.index(z[1]), VERTICAL.index(z[0])))


def describe(zones: Iterable[Zone]) -> str:
    """QaTa-style description naming the given zones (left before right, upper to lower)."""
    ordered = _sorted_zones(zones)
    if not ordered:
        return "No pulmonary infection."
    laterality = "Unilateral" if len({s for _, s in ordered}) == 1 else "Bilateral"
    n = len(ordered)
    phrases = [f"{v} {s} lung" for v, s in ordered]
    joined = phrases[0] if n == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    area = "area" if n == 1 else "areas"
    return f"{laterality} pulmonary infection, {_NUMBERS[n]} infected {area}, {joined}."


_ZONE_RE = re.compile(r"\b(upper|middle|lower)\W+(left|right)\W+lung\b", re.IGNORECASE)
_SIDE_RE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def parse_zones(text: str) -> set[Zone]:
    """Zones named in ``text`` (inverse of :func:`describe`; ignores case and punctuation)."""
    return {(v.lower(), s.lower()) for v, s in _ZONE_RE.findall(text)}


def swap_laterality(text: str) -> str:
    """Swap the whole words left <-> right, keeping their case (for horizontal flips)."""

    def repl(match: re.Match[str]) -> str:
        word = match.group(0)
        new = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new

    return _SIDE_RE.sub(repl, text)


# ----------------------------------------------------------------------------- geometry


def _image_half(side: str, convention: str) -> int:
    """0 = image-left lung, 1 = image-right lung, for an anatomical ``side``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    plain = SIDES.index(side)
    return 1 - plain if convention == "radiographic" else plain


def zone_map(
    image_size: int, geometry: dict[str, Any] | Sequence[dict], convention: str
) -> np.ndarray:
    """Per-pixel zone index (``VERTICAL.index(v) * 2 + SIDES.index(s)``), -1 outside the lungs.

    ``geometry`` is a case meta dict (with key ``"lungs"``) or its ``"lungs"`` list: two
    ellipses ``{"cx", "cy", "ax", "ay"}`` in pixel units (pixel centres at integer coordinates),
    ordered image-left then image-right.
    """
    lungs = geometry["lungs"] if isinstance(geometry, dict) else geometry
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    out = np.full((image_size, image_size), -1, dtype=np.int8)
    for side in SIDES:
        lung = lungs[_image_half(side, convention)]
        inside = ((xx - lung["cx"]) / lung["ax"]) ** 2 + ((yy - lung["cy"]) / lung["ay"]) ** 2 <= 1
        t = (yy - (lung["cy"] - lung["ay"])) / (2 * lung["ay"])
        vertical = np.clip(np.floor(3 * t), 0, 2).astype(np.int8)
        out[inside] = (vertical * 2 + SIDES.index(side))[inside]
    return out


def _sample_lungs(rng: np.random.Generator, size: int) -> list[dict[str, float]]:
    dx, cy = rng.uniform(0.19, 0.23), rng.uniform(0.47, 0.53)
    lungs = []
    for sign in (-1, 1):
        lung = {
            "cx": (0.5 + sign * (dx + rng.uniform(-0.01, 0.01))) * size,
            "cy": (cy + rng.uniform(-0.015, 0.015)) * size,
            "ax": rng.uniform(0.14, 0.175) * size,
            "ay": rng.uniform(0.30, 0.36) * size,
        }
        lungs.append({k: round(float(v), 4) for k, v in lung.items()})
    return lungs


def _smooth_noise(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
    """Unit-variance-ish low-frequency noise: a coarse grid, bilinearly upsampled."""
    coarse = rng.standard_normal((grid, grid))
    pos = np.linspace(0, grid - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), grid - 2)
    frac = pos - lo
    interp = np.zeros((size, grid))
    interp[np.arange(size), lo] = 1 - frac
    interp[np.arange(size), lo + 1] = frac
    return interp @ coarse @ interp.T


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def _ellipse_radius(size: int, lesion: dict[str, float]) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c, s = np.cos(lesion["theta"]), np.sin(lesion["theta"])
    u = (xx - lesion["cx"]) * c + (yy - lesion["cy"]) * s
    v = -(xx - lesion["cx"]) * s + (yy - lesion["cy"]) * c
    return np.sqrt((u / lesion["a"]) ** 2 + (v / lesion["b"]) ** 2)


def _place_lesion(
    rng: np.random.Generator, zones: np.ndarray, zone_idx: int
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Sample an elliptical lesion whose mask lies inside zone ``zone_idx``.

    Returns (parameters, boolean mask, soft profile in [0, 1] with 0.5 on the mask contour).
    """
    size = zones.shape[0]
    inside_zone = zones == zone_idx
    ys, xs = np.nonzero(inside_zone)
    scale = 1.0
    for attempt in range(48):
        k = rng.integers(len(ys))
        a = rng.uniform(0.04, 0.09) * size * scale
        params = {
            "cx": xs[k] + rng.uniform(-0.5, 0.5),
            "cy": ys[k] + rng.uniform(-0.5, 0.5),
            "a": a,
            "b": a * rng.uniform(0.55, 1.0),
            "theta": rng.uniform(0, np.pi),
        }
        lesion = {key: round(float(v), 4) for key, v in params.items()}  # exact in meta.json
        d = _ellipse_radius(size, lesion)
        mask = d <= 1
        if mask.any() and not (mask & ~inside_zone).any():
            break
        if attempt % 8 == 7:
            scale *= 0.8
    else:  # practically unreachable: a tiny lesion at the zone's central pixel, clipped
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        lesion = {"cx": float(xs[k]), "cy": float(ys[k]), "a": 1.5, "b": 1.5, "theta": 0.0}
        d = _ellipse_radius(size, lesion)
        mask = (d <= 1) & inside_zone
        return lesion, mask, _sigmoid((1 - d) / 0.25) * inside_zone
    return lesion, mask, _sigmoid((1 - d) / 0.25)


# ----------------------------------------------------------------------------- cases


def generate_case(
    rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray, str, dict[str, Any]]:
    """One case: (image uint8 HxW, mask uint8 {0,255}, text, meta)."""
    size = cfg.image_size
    lungs = _sample_lungs(rng, size)
    zones = zone_map(size, lungs, cfg.convention)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)

    # Dark background with a faint body silhouette.
    body_d = np.sqrt(
        ((xx - size / 2) / (0.46 * size)) ** 2 + ((yy - 0.55 * size) / (0.6 * size)) ** 2
    )
    image = rng.uniform(12, 30) + rng.uniform(10, 25) * _sigmoid((1 - body_d) / 0.08)
    image += 4 * _smooth_noise(rng, size, 5)
    texture = _smooth_noise(rng, size, 7)
    grain = _smooth_noise(rng, size, max(8, size // 6))
    period, phase = rng.uniform(0.07, 0.1) * size, rng.uniform(0, 2 * np.pi)
    for lung in lungs:
        d = np.sqrt(((xx - lung["cx"]) / lung["ax"]) ** 2 + ((yy - lung["cy"]) / lung["ay"]) ** 2)
        field = _sigmoid((1 - d) / 0.05)
        level = rng.uniform(85, 125) - 10 * (yy - lung["cy"]) / lung["ay"]  # mild vertical shading
        ribs = 4 * np.sin(2 * np.pi * (yy + 1.2 * (xx - lung["cx"]) ** 2 / size) / period + phase)
        image += field * (level - 25 + 7 * texture + ribs)

    n_targets = int(rng.choice(4, p=N_TARGET_PROBS))
    order = [int(z) for z in rng.permutation(6)]
    free = order[n_targets:]
    n_distractors = min(len(free), 1 + int(rng.choice(2, p=N_DISTRACTOR_PROBS)))
    target_idx, distractor_idx = order[:n_targets], free[:n_distractors]

    mask = np.zeros((size, size), dtype=bool)
    lesions = []
    for zone_idx in target_idx + distractor_idx:
        lesion, lesion_mask, profile = _place_lesion(rng, zones, zone_idx)
        amplitude = rng.uniform(40, 75)
        image += amplitude * profile * (1 + 0.15 * grain)
        is_target = zone_idx in target_idx
        if is_target:
            mask |= lesion_mask
        zone = _zone_of_index(zone_idx)
        lesions.append({"zone": list(zone), "target": is_target, **lesion, "amplitude": amplitude})

    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-10, 10)
    noise = rng.uniform(2, 5) * rng.standard_normal((size, size))
    image = (image - 80) * contrast + 80 + brightness + noise
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    mask_u8 = mask.astype(np.uint8) * 255

    targets = _sorted_zones(_zone_of_index(i) for i in target_idx)
    distractors = _sorted_zones(_zone_of_index(i) for i in distractor_idx)
    meta = {
        "targets": [list(z) for z in targets],
        "distractors": [list(z) for z in distractors],
        "lungs": lungs,
        "lesions": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in les.items()}
            for les in lesions
        ],
    }
    return image_u8, mask_u8, describe(targets), meta


# ----------------------------------------------------------------------------- layout


def _write_split(
    tmp: Path, split: str, title: str, split_idx: int, n: int, cfg: SyntheticConfig
) -> list[dict[str, Any]]:
    folder = tmp / f"{title}_Folder"
    (folder / "img").mkdir(parents=True)
    (folder / "labelcol").mkdir()
    rows, cases = [], []
    for i in range(n):
        rng = np.random.default_rng([cfg.seed, split_idx, i])
        image, mask, text, meta = generate_case(rng, cfg)
        name = f"{split}_{i:05d}.png"
        Image.fromarray(image).save(folder / "img" / name)
        Image.fromarray(mask).save(folder / "labelcol" / f"mask_{name}")
        rows.append({"Image": f"mask_{name}", "Description": text})
        cases.append({"image": name, "mask": f"mask_{name}", "text": text, **meta})
    sheet = pd.DataFrame(rows, columns=["Image", "Description"])
    sheet.to_excel(folder / f"{title}_text.xlsx", index=False, engine="openpyxl")
    return cases


def generate(root: str | Path, cfg: SyntheticConfig, *, overwrite: bool = False) -> Path:
    """Write the dataset to ``root`` atomically (temporary sibling folder, then rename).

    Raises FileExistsError if ``root`` exists (also when it appears meanwhile), unless
    ``overwrite`` is set, in which case the old folder is replaced after a successful build.
    """
    with atomic_folder(root, replace=overwrite) as tmp:
        counts = (cfg.n_train, cfg.n_val, cfg.n_test)
        splits = {
            split: _write_split(tmp, split, title, k, counts[k], cfg)
            for k, (split, title) in enumerate(SPLITS)
        }
        meta = {
            "version": GENERATOR_VERSION,
            "fingerprint": cfg.fingerprint(),
            "config": asdict(cfg),
            "splits": splits,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return root


def ensure(cache_dir: str | Path, cfg: SyntheticConfig) -> Path:
    """Return ``cache_dir/synthetic-<fingerprint>``, generating it first if needed."""
    root = Path(cache_dir) / f"synthetic-{cfg.fingerprint()}"
    if (root / "meta.json").exists():
        return root
    try:
        generate(root, cfg, overwrite=root.exists())
    except FileExistsError:
        if not (root / "meta.json").exists():
            raise
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the synthetic text-guided CXR dataset.")
    parser.add_argument("--out", required=True, help="output folder (must not exist)")
    parser.add_argument("--n-train", type=int, default=SyntheticConfig.n_train)
    parser.add_argument("--n-val", type=int, default=SyntheticConfig.n_val)
    parser.add_argument("--n-test", type=int, default=SyntheticConfig.n_test)
    parser.add_argument("--size", dest="image_size", type=int, default=SyntheticConfig.image_size)
    parser.add_argument("--seed", type=int, default=SyntheticConfig.seed)
    parser.add_argument("--convention", choices=CONVENTIONS, default="radiographic")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k != "out"}  # named as the config's fields
    print(generate(args.out, SyntheticConfig(**given)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
