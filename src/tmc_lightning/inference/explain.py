"""Cross-attention heatmaps (the paper's Fig. 4): ``tmc-explain ckpt_path=... input=img.png text="..."``.

For every MCM stage, the weights with which the visual tokens attend to each word of the prompt
are drawn over the image, one panel per word plus one averaged over the prompt's words.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

from tmc_lightning.data.imageio import header_size, read_image
from tmc_lightning.data.text import encodings
from tmc_lightning.inference.checkpoint import CheckpointError
from tmc_lightning.inference.predictor import Predictor

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@torch.no_grad()
def stage_attention(
    predictor: Predictor, gray: np.ndarray, text: str
) -> tuple[list[str], list[torch.Tensor]]:
    """The prompt's words and, per stage, their maps (n_words, h, w) at the stage's own grid."""
    model = predictor.module.model
    if not getattr(model, "mcm", None):
        raise CheckpointError(
            f"model {predictor.module.hparams.model_name!r} has no cross-attention (MCM) to explain; "
            "use a TMC checkpoint trained with model.mcm=true"
        )
    text = predictor.check_text(text, "explain")
    x, ids, mask = predictor.tensors([gray], [text])
    out = model.forward_features(x, ids, mask, need_attention=True)
    # The tokenizer marks what it added ([CLS]/[SEP], CLIP's start and end of text, padding):
    # those get no panel of their own.
    enc = encodings(predictor.tokenizer, [text], predictor.max_words)[0]
    keep = [i for i, s in enumerate(enc.special_tokens_mask) if not s]
    if not keep:  # an empty prompt (a model trained with text dropout): the special tokens' maps
        keep = [i for i, a in enumerate(enc.attention_mask) if a]
    words = [enc.tokens[i] for i in keep]
    return words, [att[0, keep].float().cpu() for att in out.attentions]  # att: (1, T, h, w)


def upsample(stage: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """One stage's maps (n, h, w) -> (n, *size), bilinear."""
    return F.interpolate(stage[None], size=size, mode="bilinear", align_corners=False)[0].numpy()


def attention_maps(
    predictor: Predictor, gray: np.ndarray, text: str
) -> tuple[list[str], list[np.ndarray]]:
    """The prompt's words and, per stage, their maps (n_words, H, W) at the image's size."""
    words, stages = stage_attention(predictor, gray, text)
    return words, [upsample(stage, gray.shape) for stage in stages]


def heatmap_figure(gray: np.ndarray, words: list[str], maps: list[np.ndarray], text: str):
    """Grid: one row per stage, one column per word, plus the prompt average in the last column."""
    cols, rows = len(words) + 1, len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows + 0.6), squeeze=False)
    for r, stage in enumerate(maps):
        panels = [*stage, stage.mean(0)]
        for c, (ax, heat) in enumerate(zip(axes[r], panels, strict=True)):
            ax.imshow(gray, cmap="gray")
            ax.imshow(heat / (heat.max() + 1e-8), cmap="jet", alpha=0.45)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(words[c] if c < len(words) else "mean", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"stage {r + 1}", fontsize=9)
    fig.suptitle(text or "(no prompt)", fontsize=10)
    fig.tight_layout()
    return fig


def explain(ckpt_path: str, source: str, text: str, out: str, device: str = "cpu") -> Path:
    predictor = Predictor.from_checkpoint(ckpt_path, device)
    header_size(source)  # a huge image is refused by its header, before it is decoded
    gray = read_image(Path(source))
    words, maps = attention_maps(predictor, gray, text)
    fig = heatmap_figure(gray, words, maps, text)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path} ({len(maps)} stages x {len(words)} words + mean)")
    return path
