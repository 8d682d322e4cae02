"""Tests for the synthetic text-guided chest-radiograph dataset generator."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tmc_lightning.data import synthetic
from tmc_lightning.data.synthetic import (
    SIDES,
    VERTICAL,
    SyntheticConfig,
    describe,
    ensure,
    generate,
    generate_case,
    parse_zones,
    swap_laterality,
    zone_map,
)
from tmc_lightning.paths import cache_root

SIZE = 64
ALL_ZONES = [(v, s) for v in VERTICAL for s in SIDES]
SPLIT_DIRS = {"train": "Train_Folder", "val": "Val_Folder", "test": "Test_Folder"}


def _zone_idx(zone) -> int:
    return VERTICAL.index(zone[0]) * 2 + SIDES.index(zone[1])


def _load(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


@pytest.fixture(scope="module", params=["radiographic", "plain"])
def dataset(request, tmp_path_factory) -> tuple[Path, SyntheticConfig]:
    cfg = SyntheticConfig(
        n_train=10, n_val=3, n_test=3, image_size=SIZE, seed=3, convention=request.param
    )
    root = generate(tmp_path_factory.mktemp(request.param) / "syn", cfg)
    return root, cfg


def _cases(root: Path):
    """Yield (split folder, case meta, sheet text, image, mask) for every case."""
    meta = json.loads((root / "meta.json").read_text())
    for split, folder_name in SPLIT_DIRS.items():
        folder = root / folder_name
        title = folder_name.split("_")[0]
        sheet = pd.read_excel(folder / f"{title}_text.xlsx")
        texts = dict(zip(sheet["Image"], sheet["Description"], strict=True))
        for case in meta["splits"][split]:
            image = _load(folder / "img" / case["image"])
            mask = _load(folder / "labelcol" / case["mask"])
            yield folder, case, texts[case["mask"]], image, mask


def _check_case(case: dict, text: str, image: np.ndarray, mask: np.ndarray, convention: str):
    size = image.shape[0]
    assert image.dtype == np.uint8 and mask.dtype == np.uint8
    assert image.shape == mask.shape == (size, size)
    assert set(np.unique(mask).tolist()) <= {0, 255}
    named = parse_zones(text)
    assert named == {tuple(z) for z in case["targets"]}
    assert text == describe(named)
    zones = zone_map(size, case, convention)
    assert not mask[zones == -1].any()
    for zone in ALL_ZONES:
        has_mask = bool(mask[zones == _zone_idx(zone)].any())
        assert has_mask == (zone in named), (zone, text)
    if text == "No pulmonary infection.":
        assert not mask.any()
    distractors = {tuple(z) for z in case["distractors"]}
    assert not distractors & named
    assert 1 <= len(distractors) <= 2


def test_text_mask_consistency_on_disk(dataset):
    root, cfg = dataset
    n = 0
    for _, case, text, image, mask in _cases(root):
        assert case["text"] == text
        _check_case(case, text, image, mask, cfg.convention)
        n += 1
    assert n == cfg.n_train + cfg.n_val + cfg.n_test


@pytest.mark.parametrize("convention", ["radiographic", "plain"])
def test_text_mask_consistency_many_cases(convention):
    cfg = SyntheticConfig(image_size=48, convention=convention)
    counts = {k: 0 for k in range(4)}
    for i in range(60):
        image, mask, text, meta = generate_case(np.random.default_rng([7, i]), cfg)
        _check_case(meta, text, image, mask, convention)
        counts[len(meta["targets"])] += 1
    assert counts[1] + counts[2] > counts[0] + counts[3]  # most cases have 1-2 targets
    assert counts[0] > 0  # the empty case gets exercised


def test_lesion_records_reproduce_mask():
    """meta["lesions"] holds each lesion's ellipse; the targets' union is exactly the mask."""
    cfg = SyntheticConfig(image_size=SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    for i in range(20):
        _, mask, _, meta = generate_case(np.random.default_rng([5, i]), cfg)
        union = np.zeros_like(mask, dtype=bool)
        for les in meta["lesions"]:
            c, s = np.cos(les["theta"]), np.sin(les["theta"])
            u = (xx - les["cx"]) * c + (yy - les["cy"]) * s
            v = -(xx - les["cx"]) * s + (yy - les["cy"]) * c
            inside = np.sqrt((u / les["a"]) ** 2 + (v / les["b"]) ** 2) <= 1
            assert inside.any()
            if les["target"]:
                union |= inside
        assert np.array_equal(union, mask == 255)
        assert len(meta["lesions"]) == len(meta["targets"]) + len(meta["distractors"])


def test_laterality_convention():
    """Radiographic: the patient's left lung is on the image's right; plain: the opposite."""
    for convention, left_on_image_right in (("radiographic", True), ("plain", False)):
        cfg = SyntheticConfig(image_size=SIZE, convention=convention)
        for i in range(40):
            _, mask, text, _ = generate_case(np.random.default_rng([11, i]), cfg)
            sides = {s for _, s in parse_zones(text)}
            if sides != {"left"}:
                continue
            cols = np.nonzero(mask.any(axis=0))[0]
            assert (cols >= SIZE // 2).all() == left_on_image_right
            assert (cols < SIZE // 2).all() != left_on_image_right


def test_determinism(tmp_path):
    cfg = SyntheticConfig(n_train=6, n_val=3, n_test=3, image_size=SIZE, seed=1)
    a, b = generate(tmp_path / "a", cfg), generate(tmp_path / "b", cfg)
    pngs = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(pngs) == 2 * 12
    assert pngs == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in pngs:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for sheet in a.rglob("*.xlsx"):
        pd.testing.assert_frame_equal(pd.read_excel(sheet), pd.read_excel(b / sheet.relative_to(a)))
    assert (a / "meta.json").read_text() == (b / "meta.json").read_text()

    other = generate(
        tmp_path / "c", SyntheticConfig(n_train=6, n_val=3, n_test=3, image_size=SIZE, seed=2)
    )
    rel = Path("Train_Folder/img/train_00000.png")
    assert (a / rel).read_bytes() != (other / rel).read_bytes()


def test_split_sizes_do_not_change_other_cases(tmp_path):
    small = generate(tmp_path / "s", SyntheticConfig(n_train=2, n_val=1, n_test=1, image_size=SIZE))
    big = generate(tmp_path / "b", SyntheticConfig(n_train=4, n_val=2, n_test=1, image_size=SIZE))
    for rel in (
        "Train_Folder/img/train_00001.png",
        "Val_Folder/img/val_00000.png",
        "Test_Folder/labelcol/mask_test_00000.png",
    ):
        assert (small / rel).read_bytes() == (big / rel).read_bytes()


def test_distractors_are_drawn(dataset):
    root, cfg = dataset
    n_cases, n_with, n_brighter, n_compared = 0, 0, 0, 0
    for _, case, _, image, _ in _cases(root):
        n_cases += 1
        n_with += bool(case["distractors"])
        zones = zone_map(SIZE, case, cfg.convention)
        used = {_zone_idx(z) for z in case["targets"] + case["distractors"]}
        free = [z for z in range(6) if z not in used]
        free_level = np.median([np.percentile(image[zones == z], 95) for z in free])
        for zone in case["distractors"]:
            n_compared += 1
            n_brighter += np.percentile(image[zones == _zone_idx(zone)], 95) > free_level
    assert n_with >= 0.8 * n_cases
    assert n_brighter >= 0.8 * n_compared


def test_describe_examples():
    assert describe([("lower", "left")]) == (
        "Unilateral pulmonary infection, one infected area, lower left lung."
    )
    assert describe([("lower", "right"), ("upper", "left")]) == (
        "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
    )
    assert describe([("middle", "left"), ("upper", "left")]) == (
        "Unilateral pulmonary infection, two infected areas, upper left lung and middle left lung."
    )
    assert describe([("lower", "right"), ("middle", "left"), ("upper", "left")]) == (
        "Bilateral pulmonary infection, three infected areas, "
        "upper left lung, middle left lung and lower right lung."
    )
    assert describe([]) == "No pulmonary infection."
    with pytest.raises(ValueError):
        describe([("top", "left")])


def test_describe_parse_round_trip():
    for k in range(4):
        for subset in itertools.combinations(ALL_ZONES, k):
            text = describe(subset)
            assert parse_zones(text) == set(subset)
            assert parse_zones(text.upper().replace(",", ";")) == set(subset)
    assert parse_zones("no pulmonary infection") == set()
    assert parse_zones("Upper-Left lung, LOWER  right lung!") == {
        ("upper", "left"),
        ("lower", "right"),
    }


def test_swap_laterality():
    text = "upper left lung and lower right lung"
    assert swap_laterality(text) == "upper right lung and lower left lung"
    assert swap_laterality(swap_laterality(text)) == text
    assert swap_laterality("Left, RIGHT; leftover bright") == "Right, LEFT; leftover bright"
    for subset in itertools.combinations(ALL_ZONES, 2):
        swapped = {(v, "right" if s == "left" else "left") for v, s in subset}
        assert parse_zones(swap_laterality(describe(subset))) == swapped


def test_zone_map_shape_and_values():
    _, _, _, meta = generate_case(np.random.default_rng(0), SyntheticConfig(image_size=SIZE))
    for convention in ("radiographic", "plain"):
        zones = zone_map(SIZE, meta, convention)
        assert zones.dtype == np.int8 and zones.shape == (SIZE, SIZE)
        assert set(np.unique(zones).tolist()) == set(range(-1, 6))
        assert np.array_equal(zones, zone_map(SIZE, meta["lungs"], convention))
        # upper zones sit above lower zones
        rows = np.nonzero(zones == _zone_idx(("upper", "left")))[0]
        assert rows.max() < np.nonzero(zones == _zone_idx(("lower", "left")))[0].min()
    flipped = zone_map(SIZE, meta, "plain")
    radio = zone_map(SIZE, meta, "radiographic")
    assert np.array_equal(radio == -1, flipped == -1)
    lung = radio >= 0
    assert np.array_equal((radio[lung] % 2), 1 - (flipped[lung] % 2))


def test_layout(dataset):
    root, _ = dataset
    names = set()
    for folder_name in SPLIT_DIRS.values():
        folder = root / folder_name
        title = folder_name.split("_")[0]
        sheet = pd.read_excel(folder / f"{title}_text.xlsx")
        assert list(sheet.columns) == ["Image", "Description"]
        for mask_name in sheet["Image"]:
            assert mask_name.startswith("mask_")
            assert (folder / "labelcol" / mask_name).is_file()
            assert (folder / "img" / mask_name.removeprefix("mask_")).is_file()
            names.add(mask_name)
        assert len(list((folder / "img").iterdir())) == len(sheet)
    assert len(names) == 16  # unique across splits
    meta = json.loads((root / "meta.json").read_text())
    assert meta["version"] == synthetic.GENERATOR_VERSION
    assert set(meta["splits"]) == {"train", "val", "test"}


def test_invalid_convention():
    with pytest.raises(ValueError, match="convention"):
        SyntheticConfig(convention="anatomical")
    with pytest.raises(ValueError, match="convention"):
        zone_map(SIZE, [], "sideways")


def test_fingerprint():
    cfg = SyntheticConfig()
    assert cfg.fingerprint() == SyntheticConfig().fingerprint()
    assert cfg.fingerprint() != SyntheticConfig(seed=1).fingerprint()
    assert cfg.fingerprint() != SyntheticConfig(convention="plain").fingerprint()


def test_atomic_on_failure(tmp_path, monkeypatch):
    real = synthetic.generate_case
    calls = {"n": 0}

    def flaky(rng, cfg):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("interrupted")
        return real(rng, cfg)

    monkeypatch.setattr(synthetic, "generate_case", flaky)
    root = tmp_path / "syn"
    with pytest.raises(RuntimeError, match="interrupted"):
        generate(root, SyntheticConfig(n_train=4, n_val=2, n_test=2, image_size=SIZE))
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # temporary folder cleaned up too


def test_generate_refuses_existing(tmp_path):
    (tmp_path / "syn").mkdir()
    with pytest.raises(FileExistsError):
        generate(tmp_path / "syn", SyntheticConfig(n_train=1, n_val=0, n_test=0, image_size=SIZE))


def test_ensure_and_cache_dir(tmp_path, monkeypatch):
    cfg = SyntheticConfig(n_train=2, n_val=1, n_test=1, image_size=SIZE)
    root = ensure(tmp_path, cfg)
    assert root == tmp_path / f"synthetic-{cfg.fingerprint()}"
    assert (root / "meta.json").is_file()
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert ensure(tmp_path, cfg) == root
    assert (root / "meta.json").stat().st_mtime_ns == stamp  # not regenerated

    (root / "meta.json").unlink()  # an incomplete folder gets regenerated
    assert (ensure(tmp_path, cfg) / "meta.json").is_file()

    monkeypatch.setenv("TMC_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    monkeypatch.delenv("TMC_CACHE_DIR")
    assert cache_root() == Path.home() / ".cache" / "tmc_lightning"


def test_ensure_loses_race_gracefully(tmp_path, monkeypatch):
    """If another process finishes first, the late rename gives up and ensure returns."""
    cfg = SyntheticConfig(n_train=1, n_val=1, n_test=1, image_size=SIZE)
    target = tmp_path / f"synthetic-{cfg.fingerprint()}"
    real = synthetic._write_split
    raced = []

    def racing(tmp, split, *args):
        if split == "test" and not raced:  # the other process wins meanwhile
            raced.append(True)
            generate(target, cfg)
        return real(tmp, split, *args)

    monkeypatch.setattr(synthetic, "_write_split", racing)
    assert ensure(tmp_path, cfg) == target
    assert (target / "meta.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--n-train", "2", "--n-val", "1", "--n-test", "1", "--size", "48"]
    assert synthetic.main([*args, "--convention", "plain"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["convention"] == "plain" and meta["config"]["image_size"] == 48
    assert _load(out / "Train_Folder/img/train_00001.png").shape == (48, 48)
