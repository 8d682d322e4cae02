"""tmc-report on fake run folders: table values, files, plots, the paired test, errors."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy.stats import wilcoxon

from tmc_lightning.cli.report import main
from tmc_lightning.reporting.build import build_report
from tmc_lightning.reporting.runs import ReportError

SEEDS = (1, 2)
IMAGES = [f"img{i:02d}.png" for i in range(12)]
# (mcm, align) -> per-seed base score; the four configurations are clearly ordered.
BASE = {(True, True): 0.80, (True, False): 0.76, (False, True): 0.74, (False, False): 0.70}
# Per-configuration image pattern so the paired differences are not constant.
PATTERN = {cfg: np.sin(np.arange(len(IMAGES)) * (k + 1)) * 0.05 for k, cfg in enumerate(BASE)}


def fake_scores(mcm: bool, align: bool, seed: int) -> dict[str, dict[str, float]]:
    base = BASE[(mcm, align)] + 0.01 * seed
    return {
        split: {
            "dice": base + off,
            "iou": base - 0.1 + off,
            "dice_global": base + 0.02 + off,
            "iou_global": base - 0.08 + off,
            "loss": 0.3,
        }
        for split, off in (("val", 0.0), ("test", -0.005))
    }


def per_image(mcm: bool, align: bool, seed: int) -> np.ndarray:
    return np.clip(BASE[(mcm, align)] + PATTERN[(mcm, align)] + 0.003 * seed, 0, 1)


def write_run(folder, mcm: bool, align: bool, seed: int, lr: float = 3e-4) -> None:
    (folder / "logs").mkdir(parents=True)
    (folder / "config.yaml").write_text(
        f"seed: {seed}\nmodel:\n  name: tmc\n  mcm: {str(mcm).lower()}\n"
        f"  align: {str(align).lower()}\nloss:\n  align_weight: 0.1\n"
        f"dataset:\n  name: qata\n  root: /data/{seed}\n  seed: {seed}\noptim:\n  lr: {lr}\n"
    )
    (folder / "tokenizer.json").write_text("{}")
    (folder / "metrics.json").write_text(json.dumps(fake_scores(mcm, align, seed)))
    with (folder / "logs" / "metrics.csv").open("w") as f:
        f.write("epoch,step,train/loss,val/dice,val/loss\n")
        for e in range(5):
            f.write(f"{e},{10 * e},0.5,,\n")
            val_dice = BASE[(mcm, align)] * (1 - 0.5**e) + 0.01 * seed
            f.write(f"{e},{10 * e + 9},,{val_dice},0.4\n")
    with (folder / "per_image_test.csv").open("w") as f:
        f.write("name,dice,iou\n")
        for name, d in zip(IMAGES, per_image(mcm, align, seed), strict=True):
            f.write(f"{name},{d},{d * 0.9}\n")


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "multirun"
    n = 0
    for mcm in (True, False):
        for align in (True, False):
            for seed in SEEDS:
                write_run(root / f"{n}_mcm={mcm},align={align},seed={seed}", mcm, align, seed)
                n += 1
        (root / f"{n}_x" / ".hydra").mkdir(parents=True)  # Hydra's copy is not a run
        (root / f"{n}_x" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    return root


def read_rows(path):
    with path.open() as f:
        return {row["label"]: row for row in csv.DictReader(f)}


def test_table_means_std_and_paper_columns(runs_dir):
    out = build_report(runs_dir, use_wandb=False)
    assert out == runs_dir / "report"
    rows = read_rows(out / "report.csv")
    assert len(rows) == 4
    paper = {
        (True, True): 84.77,
        (True, False): 84.11,
        (False, True): 83.96,
        (False, False): 83.71,
    }  # neither = LViT
    for (mcm, align), want_paper in paper.items():
        row = rows[f"mcm={str(mcm).lower()}, align={str(align).lower()}"]
        assert row["n"] == "2" and row["model.name"] == "tmc"
        for split in ("val", "test"):
            for metric in ("dice", "iou", "dice_global", "iou_global"):
                vals = [100 * fake_scores(mcm, align, s)[split][metric] for s in SEEDS]
                assert float(row[f"{split}_{metric}_mean"]) == pytest.approx(np.mean(vals))
                assert float(row[f"{split}_{metric}_std"]) == pytest.approx(np.std(vals, ddof=1))
        if want_paper is None:
            assert row["paper_dice"] == "" and row["delta_dice"] == ""
        else:
            assert float(row["paper_dice"]) == want_paper
            want_delta = float(row["test_dice_mean"]) - want_paper
            assert float(row["delta_dice"]) == pytest.approx(want_delta)
    md = (out / "report.md").read_text()
    assert "`model.name=tmc`" in md and "`dataset.name=qata`" in md  # constants, not row names
    assert "84.77" in md and "—" in md
    # dataset.root differs between seeds (a path, not a setting), dataset.seed follows the seed.
    assert "## Notes" not in md
    with (out / "runs.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 8


def test_latex_and_csv_parse(runs_dir):
    out = build_report(runs_dir, use_wandb=False)
    tex = (out / "report.tex").read_text()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{tabular}"):
        assert tex.count(token) == 1
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 4
    ncols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    for line in body:
        assert line.endswith(r"\\") and line.count("&") == ncols - 1
        assert "_" not in line.replace(r"\_", "")  # escaped for LaTeX
        assert r"$\pm$" in line and "±" not in line and "textbackslash" not in line
    with (out / "report.csv").open() as f:
        table = list(csv.reader(f))
    assert len({len(r) for r in table}) == 1 and len(table) == 5


def test_plots_exist_and_are_not_blank(runs_dir):
    out = build_report(runs_dir, use_wandb=False)
    for name in ("ablation_bars.png", "val_dice_curves.png"):
        path = out / name
        assert path.stat().st_size > 10_000
        img = np.asarray(Image.open(path).convert("L"))
        assert img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 10
    assert "no val/dice" not in (out / "report.md").read_text()


def seed_mean(mcm: bool, align: bool) -> np.ndarray:
    return np.mean([per_image(mcm, align, s) for s in SEEDS], axis=0)


def test_paired_test_default_is_best_vs_second_and_matches_scipy(runs_dir):
    out = build_report(runs_dir, use_wandb=False)
    md = (out / "report.md").read_text()
    a, b = seed_mean(True, True), seed_mean(True, False)
    want = wilcoxon(a, b)
    section = md.split("## Paired test")[1].split("##")[0]
    assert "| C4 (mcm=true, align=true) | C3 (mcm=true, align=false) |" in section
    assert f"| {len(IMAGES)} | {100 * np.median(a - b):+.3f} |" in section
    assert f"| {want.pvalue:.4g} |" in section


def test_compare_option_and_group_by(runs_dir, capsys):
    out = runs_dir / "cmp"
    rc = main(
        [str(runs_dir), "--out", str(out), "--no-wandb", "--compare", "C1", "mcm=true, align=true"]
    )
    assert rc == 0, capsys.readouterr().err
    a, b = seed_mean(False, False), seed_mean(True, True)
    section = (out / "report.md").read_text().split("## Paired test")[1]
    assert "| C1 (mcm=false, align=false) | C4 (mcm=true, align=true) |" in section
    assert f"| {wilcoxon(a, b).pvalue:.4g} |" in section
    # Grouping by one key pools the other: 2 configurations of 4 runs.
    rc = main([str(runs_dir), "--out", str(out), "--group-by", "model.mcm", "--no-wandb"])
    assert rc == 0
    assert {r["n"] for r in read_rows(out / "report.csv").values()} == {"4"}
    assert "differ in model.align" in (out / "report.md").read_text()


def test_rerun_replaces_report_and_leaves_no_temporaries(runs_dir):
    build_report(runs_dir, use_wandb=False)
    (runs_dir / "report" / "stale.txt").write_text("old")
    out = build_report(runs_dir, use_wandb=False)  # the report folder itself is not a run
    assert not (out / "stale.txt").exists()
    assert [p.name for p in runs_dir.iterdir() if p.name.startswith(".")] == []


def test_wandb_offline_run_lands_in_report_folder(runs_dir, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = build_report(runs_dir, use_wandb=True)
    offline = list((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))
    assert str(offline[0]) in (out / "report.md").read_text()


def test_errors_name_the_path_and_leave_nothing(tmp_path, runs_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="no finished run folders"):
        build_report(empty)
    assert list(empty.iterdir()) == []
    with pytest.raises(ReportError, match="not a folder"):
        build_report(tmp_path / "missing")

    unfinished = runs_dir / "9_unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("seed: 3\nmodel:\n  name: tmc\n")
    (unfinished / "tokenizer.json").write_text("{}")
    assert main([str(runs_dir), "--no-wandb"]) == 2
    err = capsys.readouterr().err
    assert str(unfinished) in err and "--skip-incomplete" in err
    assert not (runs_dir / "report").exists()
    assert [p for p in runs_dir.iterdir() if p.name.startswith(".")] == []
    assert main([str(runs_dir), "--no-wandb", "--skip-incomplete"]) == 0

    with pytest.raises(ReportError, match="no run's config.yaml has this key"):
        build_report(runs_dir, group_by=["model.nope"], skip_incomplete=True)
    with pytest.raises(ReportError, match="matches none"):
        build_report(runs_dir, compare=("C1", "C9"), skip_incomplete=True)


def test_baselines_single_seed_and_resumed_logs(tmp_path):
    from tmc_lightning.reporting.plots import val_curve
    from tmc_lightning.reporting.runs import Run

    root = tmp_path / "outputs"
    for model in ("unet", "lvit"):
        folder = root / model
        write_run(folder, True, True, 1)
        cfg = (folder / "config.yaml").read_text().replace("name: tmc", f"name: {model}")
        (folder / "config.yaml").write_text(cfg)
    resumed = root / "lvit" / "logs-resume1"
    resumed.mkdir()
    resumed.joinpath("metrics.csv").write_text("epoch,step,val/dice\n4,49,0.9\n5,59,0.95\n")
    out = build_report(root, out=tmp_path / "rep", use_wandb=False)
    rows = read_rows(out / "report.csv")
    assert set(rows) == {"model=lvit", "model=unet"}
    assert float(rows["model=lvit"]["paper_dice"]) == 83.71
    assert float(rows["model=unet"]["paper_dice"]) == 79.94
    assert rows["model=unet"]["test_dice_std"] == ""  # one run: no std
    curve = val_curve(Run(root / "lvit", {}, {}))
    assert list(curve.index) == [0, 1, 2, 3, 4, 5] and curve[4] == pytest.approx(90.0)
    # Epoch 5 of a 5-epoch run is the best checkpoint's re-validation, not a training epoch.
    curve = val_curve(Run(root / "lvit", {}, {"epochs_trained": 5}))
    assert list(curve.index) == [0, 1, 2, 3, 4]
    # The paper column follows --paper-dataset when the runs used another dataset name.
    assert (
        read_rows(build_report(root, out=tmp_path / "r2", paper_dataset="mosmed") / "report.csv")[
            "model=lvit"
        ]["paper_dice"]
        == ""
    )


def test_per_rank_scores_merge_back_in_dataset_order():
    from tmc_lightning.training.callbacks import merge_ranks

    rows = [{"name": f"n{i}", "dice": i / 10} for i in range(7)]
    world = 3  # 7 images on 3 ranks: the sampler pads to 9 with images 0 and 1 again
    padded = rows + rows[:2]
    parts = [padded[r::world] for r in range(world)]
    assert merge_ranks(parts) == rows
    assert merge_ranks([rows]) == rows and merge_ranks([[], []]) == []


def test_labelled_runs_are_rows_by_name_with_several_tests_and_cis(runs_dir, tmp_path):
    names = {(True, True): "TMC", (True, False): "MCM only", (False, True): "align only"}
    names[(False, False)] = "neither"
    for folder in runs_dir.iterdir():
        if (folder / "metrics.json").is_file():
            mcm, align = "mcm=True" in folder.name, "align=True" in folder.name
            cfg = folder / "config.yaml"
            cfg.write_text(cfg.read_text() + f"label: {names[(mcm, align)]}\n")
            (folder / "timing.json").write_text(
                json.dumps({"wall_s": 600, "cpu_s": 1150, "attempts": [{"machine": "CPU X"}]})
            )
    pairs = [("TMC", "neither"), ("align only", "neither")]
    out = build_report(runs_dir, out=tmp_path / "rep", compare=pairs, use_wandb=False)
    md = (out / "report.md").read_text()
    assert set(read_rows(out / "report.csv")) == set(names.values())  # grouped by label alone
    section = md.split("## Paired tests")[1].split("##")[0]
    for (a_cfg, b_cfg), (a, b) in zip(
        [((True, True), (False, False)), ((False, True), (False, False))], pairs, strict=True
    ):
        x, y = seed_mean(*a_cfg), seed_mean(*b_cfg)
        line = next(ln for ln in section.splitlines() if f"({a}) |" in ln and f"({b}) |" in ln)
        assert f"| {wilcoxon(x, y).pvalue:.4g} |" in line
        lo, hi = (float(v) for v in re.search(r"\(([-+.\d]+) to ([-+.\d]+)\)", line).groups())
        assert lo <= 100 * np.mean(x - y) <= hi and lo < hi
    assert "| TMC | 1 |" in md and "| 10.0 | 19.2 |" in md and "Machine: CPU X." in md
    with pytest.raises(ReportError, match="matches none"):
        build_report(runs_dir, out=tmp_path / "r2", compare=[("TMC", "UNet")])


def test_precision_used_is_shown_and_mixed_precisions_are_noted(runs_dir, tmp_path):
    # trainer.precision=auto trains in whatever the machine gives: the report must show it.
    for folder in runs_dir.iterdir():
        metrics = folder / "metrics.json"
        if metrics.is_file():
            used = "bf16-mixed" if "seed=1" in folder.name else "32-true"
            data = json.loads(metrics.read_text())
            data["precision"] = {"used": used, "requested": "auto", "reason": "test"}
            metrics.write_text(json.dumps(data))
    out = build_report(runs_dir, out=tmp_path / "rep", use_wandb=False)
    md = (out / "report.md").read_text()
    notes = md.split("## Notes")[1]
    assert notes.count("differ in trainer.precision_used") == 4  # every row mixes seeds 1 and 2
    runs = md.split("## Runs")[1]
    assert runs.count("| bf16-mixed |") == 4 and runs.count("| 32-true |") == 4
    with (out / "runs.csv").open() as f:
        assert {row["precision"] for row in csv.DictReader(f)} == {"bf16-mixed", "32-true"}
    # Grouping by the precision too splits every configuration in two.
    keys = ["model.mcm", "model.align", "trainer.precision_used"]
    out = build_report(runs_dir, out=tmp_path / "rep2", group_by=keys, use_wandb=False)
    rows = read_rows(out / "report.csv")
    assert len(rows) == 8 and {r["n"] for r in rows.values()} == {"1"}
    assert "## Notes" not in (out / "report.md").read_text()


def test_share_of_the_gap_closed_matches_hand_computed_ratios(runs_dir, tmp_path):
    """neither (floor) -> TMC (ceiling): each configuration between closes (X - floor) / gap."""
    from tmc_lightning.metrics import bootstrap_indices

    pairs = [("mcm=true, align=false", "mcm=false, align=true")]
    groups = {True: {}, False: {}}
    out = build_report(
        runs_dir,
        out=tmp_path / "rep",
        group_by=["model.mcm", "model.align"],
        compare=pairs,
        gap=("mcm=false, align=false", "mcm=true, align=true"),
    )
    md = (out / "report.md").read_text()
    section = md.split("## Share of the gap closed")[1].split("\n## ")[0]
    floor, ceiling = seed_mean(False, False), seed_mean(True, True)
    gap = ceiling - floor
    draws = bootstrap_indices(len(IMAGES))
    for mcm, align in ((True, False), (False, True)):
        x = seed_mean(mcm, align) - floor
        share = x.mean() / gap.mean()
        boot = x[draws].mean(axis=1) / gap[draws].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        groups[mcm][align] = share
        line = next(ln for ln in section.splitlines() if f"mcm={mcm}, align={align}".lower() in ln)
        assert f"{100 * share:+.1f}% ({100 * lo:+.1f}% to {100 * hi:+.1f}%)" in line, line
        assert 0 < share < 1
        by_seed = [
            (per_image(mcm, align, s) - per_image(False, False, s)).mean()
            / (per_image(True, True, s) - per_image(False, False, s)).mean()
            for s in SEEDS
        ]
        assert f"| 1: {100 * by_seed[0]:+.0f}%, 2: {100 * by_seed[1]:+.0f}% |" in line, line
    # the compared pair between the ends: the difference of their shares
    diff = groups[True][False] - groups[False][True]
    contrast = section.split("share A − share B")[1]
    assert f"| {100 * diff:+.1f}% (" in contrast
    # the floor and the ceiling are not rows of their own
    assert (
        "mcm=true, align=true) |" not in section.split("share A")[0].split("|---|---:|---:|---|")[1]
    )
    with pytest.raises(ReportError, match="--gap 'nosuch' matches none"):
        build_report(runs_dir, out=tmp_path / "r2", gap=("nosuch", "mcm=true, align=true"))


def test_runs_with_hidden_masks_get_no_paper_figure():
    from tmc_lightning.reporting.stats import paper_dice

    full = {"model.name": "tmc", "dataset.name": "qata", "model.mcm": True, "model.align": True}
    full["loss.align_weight"] = 0.1
    assert paper_dice({**full, "dataset.label_fraction": 1.0}, None) == 84.77
    assert paper_dice({**full, "dataset.label_fraction": 0.25}, None) is None
