"""Does the prompt move the mask? Same image, "lower left lung" vs "upper right lung".

    python experiments/prompt_zones/run.py CHECKPOINT

Takes every test image of the embedded synthetic set with a lesion (target or distractor) in
both the lower-left and the upper-right zone, segments it with each prompt, and measures which
share of the predicted pixels falls in the named zone. Writes experiments/prompt_zones/prompt_zones.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tmc_lightning.data import synthetic
from tmc_lightning.data.imageio import read_image
from tmc_lightning.inference.checkpoint import load_datamodule, read_checkpoint
from tmc_lightning.inference.predictor import Predictor
from tmc_lightning.utils import provenance

REPO = Path(__file__).resolve().parents[2]
PROMPTS = {
    ("lower", "left"): "Unilateral pulmonary infection, one infected area, lower left lung.",
    ("upper", "right"): "Unilateral pulmonary infection, one infected area, upper right lung.",
}


def main(ckpt: str) -> int:
    prov = provenance()
    predictor = Predictor.from_checkpoint(ckpt)
    dm = load_datamodule(read_checkpoint(ckpt))
    root = dm.resolve_root()
    meta = json.loads((root / "meta.json").read_text())
    convention = meta["config"]["convention"]
    lines = ["| image | prompt | predicted px | share in named zone |", "|---|---|---|---|"]
    shares = {z: [] for z in PROMPTS}
    for case in meta["splits"]["test"]:
        zones = {tuple(z) for z in case["targets"] + case["distractors"]}
        if not set(PROMPTS) <= zones:
            continue
        gray = read_image(root / "Test_Folder" / "img" / case["image"])
        zmap = synthetic.zone_map(gray.shape[0], case, convention)
        for zone, prompt in PROMPTS.items():
            mask = predictor.probabilities([gray], [prompt])[0] > 0.5
            idx = synthetic.VERTICAL.index(zone[0]) * 2 + synthetic.SIDES.index(zone[1])
            share = float((zmap[mask] == idx).mean()) if mask.any() else 0.0
            shares[zone].append(share)
            lines.append(
                f"| {case['image']} | {zone[0]} {zone[1]} | {int(mask.sum())} | {share:.3f} |"
            )
    summary = [
        f"- {v} {s}: {len(x)} images, mean share in the named zone {np.mean(x):.3f}, "
        f"share >= 0.9 in {np.mean(np.array(x) >= 0.9):.0%} of images"
        for (v, s), x in shares.items()
    ]
    text = "\n".join(
        [
            "# Prompt-driven masks on the synthetic test set",
            "",
            f"Command: `{prov['command']}` (git {prov['git_commit']})  ",
            f"Machine: {prov['machine_line']}",
            "",
            "Test images with a lesion in both the lower-left and the upper-right zone (radiographic",
            "convention: the patient's left is on the image's right), each segmented twice, once per",
            "prompt. 'Share' is the fraction of predicted pixels inside the zone the prompt names.",
            "",
            *summary,
            "",
            *lines,
        ]
    )
    out = REPO / "experiments" / "prompt_zones" / "prompt_zones.md"
    out.write_text(text + "\n")
    print("\n".join(summary))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
