"""How large is the alignment loss's gradient next to the task loss's, per part of the network?

    .venv/bin/python experiments/qata_align/grad_ratio.py [--batches 3] [--seed 1]

Builds the "align only" model of the QaTa study recipe (`experiment=qata_study`, MCM off,
`model.injection=full`) at its initialisation, takes the first training batches of
`../shared/data/QaTa-COV19`, and computes the gradients of the task loss (BCE) and of the
alignment loss separately. Prints, per part, the norm of each gradient (averaged over the
batches) and their ratio, and for lambda in 0.001, 0.01, 0.1 how many parameter tensors get a
larger gradient from lambda x alignment than from the task. Adam normalises each tensor's
update, so where lambda x alignment dominates, the update follows alignment at the full
learning rate, whatever lambda is.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from tmc_lightning.losses import multi_stage_alignment_loss, same_text_matrix, task_loss
from tmc_lightning.training.run import make_module, prepare

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "QaTa-COV19"))
    args = ap.parse_args()
    overrides = ["experiment=qata_study", "model=tmc", "model.injection=full", "model.mcm=false"]
    overrides += ["model.align=true", f"seed={args.seed}", f"dataset.root={args.root}"]
    overrides += ["dataset.num_workers=0"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    torch.manual_seed(args.seed)
    dm, _ = prepare(cfg)
    net = make_module(cfg, dm).model
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    norms: dict[str, collections.Counter] = {
        "task": collections.Counter(),
        "align": collections.Counter(),
    }
    batches = iter(dm.train_dataloader())
    for _ in range(args.batches):
        b = next(batches)
        out = net.forward_features(b["image"], b["input_ids"], b["attention_mask"])
        losses = {
            "task": task_loss(out.logits, b["mask"]),
            "align": multi_stage_alignment_loss(out.align, same_text_matrix(b["input_ids"])),
        }
        for key, loss in losses.items():
            grads = torch.autograd.grad(
                loss, [p for _, p in params], retain_graph=True, allow_unused=True
            )
            for (name, _), g in zip(params, grads, strict=True):
                norms[key][name] += 0.0 if g is None else float(g.norm()) / args.batches
    parts: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for name, _ in params:
        part = ".".join(name.split(".")[:2])
        parts[part][0] += norms["task"][name] ** 2
        parts[part][1] += norms["align"][name] ** 2
        parts[part][2] += 1
    print(
        f"seed {args.seed}, {args.batches} batches of {cfg.dataset.batch_size}, at initialisation\n"
    )
    print("| part | tensors | task gradient | alignment gradient | alignment / task |")
    print("|---|---:|---:|---:|---:|")
    for part, (t, a, n) in sorted(parts.items()):
        ratio = f"{a**0.5 / t**0.5:.3g}" if t > 0 else ("—" if a == 0 else "only alignment")
        print(f"| `{part}` | {n} | {t**0.5:.3g} | {a**0.5:.3g} | {ratio} |")
    print()
    shared = [n for n, _ in params if norms["task"][n] > 0 and norms["align"][n] > 0]
    for lam in (0.001, 0.01, 0.1):
        led = [n for n in shared if lam * norms["align"][n] > norms["task"][n]]
        by_part = collections.Counter(n.split(".")[0] for n in led)
        print(
            f"lambda {lam}: {len(led)} of the {len(shared)} tensors both losses reach get more "
            f"gradient from lambda x alignment than from the task ({dict(by_part)})"
        )


if __name__ == "__main__":
    main()
