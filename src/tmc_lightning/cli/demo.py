"""``tmc-demo ckpt_path=...``: a Gradio page that segments an uploaded image from a typed prompt.

Needs the ``demo`` extra (``pip install -e '.[demo]'``). Binds to 127.0.0.1 unless
``server_name`` says otherwise: the page runs the model on whatever anyone who reaches it
uploads, so expose it only on a network you trust.

The page shows the uploaded image as the model reads it, the overlay beside it, a status line
that keeps the last message, the checkpoint's own validation images as examples, and one large
cross-attention heatmap for a chosen stage and word.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tmc_lightning.cli.common import USER_ERRORS, one_line_errors
from tmc_lightning.errors import ConfigError
from tmc_lightning.inference.predictor import Predictor
from tmc_lightning.inference.segment import (
    ALL_WORDS,
    Attention,
    Examples,
    checkpoint_examples,
    describe_upload,
    read_upload,
    segment,
    shown_gray,
)
from tmc_lightning.utils import CONF_DIR

log = logging.getLogger("tmc_lightning.demo")

READY = "ready"


def _copy_examples(examples: Examples, folder: Path) -> list[list[str]]:
    """The examples' images copied into the demo's own folder (Gradio serves only from there)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, e in enumerate(examples.items):
        src = Path(e["image"])
        dst = folder / str(i + 1) / src.name  # the file keeps its name: the page shows it
        dst.parent.mkdir()
        shutil.copyfile(src, dst)
        rows.append([str(dst), e["text"]])
    return rows


def build_app(
    predictor: Predictor,
    threshold: float = 0.5,
    title: str = "TMC demo",
    examples: Examples | None = None,
) -> Any:
    """The Gradio Blocks app around ``predictor``; ``examples``: what the page offers to click."""
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError(
            "tmc-demo needs Gradio: pip install -e '.[demo]' (or make demo)"
        ) from None
    examples = examples or Examples(note="examples: none")
    out_dir = Path(tempfile.mkdtemp(prefix="tmc-demo-"))
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    rows = _copy_examples(examples, out_dir / "examples")
    hint = predictor.convention_note()
    if predictor.accepts_empty_prompt and predictor.uses_text:
        hint += "; this model was trained with text dropout and also segments without a prompt"
    explains = bool(getattr(predictor.module.model, "mcm", None))

    def no_choices() -> Any:
        return gr.update(choices=[], value=None)

    def cleared(message: str) -> tuple:
        """The result panels emptied, the message in the status line."""
        return (None, None, "", None, None, no_choices(), no_choices(), None, message)

    def show_upload(path: str | None):
        """A new upload: shown as the model reads it; the previous result is cleared."""
        if not path:
            return (None, *cleared(READY))
        try:
            gray = read_upload(path)
            status = describe_upload(path, gray)
        except USER_ERRORS as err:
            return (None, *cleared(f"error: {err}"))
        except Exception as err:  # noqa: BLE001 - anything else, still one readable line
            log.exception("reading the upload failed")
            return (None, *cleared(f"error: could not read this image: {err}"))
        return (shown_gray(gray), *cleared(status))

    def run(path: str | None, text: str):
        try:
            result = segment(predictor, path, text, threshold)
        except USER_ERRORS as err:  # the message stays in the page, never a stack trace
            return cleared(f"error: {err}")
        except Exception as err:  # noqa: BLE001 - anything else, still one readable line
            log.exception("segmentation failed")
            return cleared(f"error: could not segment this image: {err}")
        stem = Path(path).stem if path else "image"
        request = Path(tempfile.mkdtemp(dir=out_dir))  # one per request: never another's mask
        mask_path = result.save_mask(request / f"{stem}_mask.png")
        att = result.attention
        stage = len(att.stages) - 1 if att else None
        return (
            result.overlay,
            result.prob_image(),
            result.area_text(),
            str(mask_path),
            (result.gray, att) if att else None,
            gr.Dropdown(choices=att.stage_choices(), value=stage) if att else no_choices(),
            gr.Dropdown(choices=att.word_choices(), value=ALL_WORDS) if att else no_choices(),
            att.heatmap(result.gray, stage) if att else None,
            f"done: {Path(path).name if path else 'image'}, {result.area_text()}",
        )

    def redraw(state: tuple | None, stage: int | None, word: int | None):
        if not state or stage is None:
            return None
        gray, att = state
        att: Attention
        return att.heatmap(gray, int(stage), ALL_WORDS if word is None else int(word))

    with gr.Blocks(title=title) as app:
        gr.Markdown(
            f"## {title}: `{predictor.module.hparams.model_name}`\n"
            "Upload an image (PNG, JPEG, TIFF, BMP; gray, colour or 16-bit) or pick an example, "
            f"type a prompt, press **Segment**. {hint[0].upper() + hint[1:]}."
        )
        status = gr.Textbox(
            label="Status", value=READY, interactive=False, lines=1, elem_id="status"
        )
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.File(
                    label="Image",
                    file_types=[".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"],
                    type="filepath",
                    elem_id="image",
                )
                text = gr.Textbox(
                    label="Prompt",
                    value=examples.prompt,
                    placeholder="e.g. the finding as the training reports describe it",
                    lines=2,
                    elem_id="prompt",
                )
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                if rows:
                    gr.Examples(rows, inputs=[image, text], label=examples.label)
                else:
                    gr.Markdown(examples.note, elem_id="no-examples")
            with gr.Column(scale=1):
                preview = gr.Image(
                    label="Your image (as the model reads it)",
                    type="pil",
                    format="png",  # lossless: the pixels the model reads
                    interactive=False,
                    elem_id="preview",
                )
            with gr.Column(scale=1):
                over = gr.Image(
                    label="Overlay", type="pil", format="png", interactive=False, elem_id="overlay"
                )
                area = gr.Textbox(label="Mask", interactive=False, elem_id="area")
                mask_file = gr.File(label="Mask (PNG, the image's size)", elem_id="mask")
        with gr.Row():
            with gr.Column(scale=1):
                prob = gr.Image(
                    label="Probability", type="pil", format="png", interactive=False, elem_id="prob"
                )
            with gr.Column(scale=2, visible=explains):
                with gr.Row():
                    stage = gr.Dropdown(
                        label="Cross-attention stage", choices=[], interactive=True, elem_id="stage"
                    )
                    word = gr.Dropdown(
                        label="Word (from the tokenizer)",
                        choices=[],
                        interactive=True,
                        elem_id="word",
                    )
                heat = gr.Image(
                    label="Cross-attention over the image (red: most attention, "
                    "scaled to this map's maximum)",
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="heat",
                )
        attention = gr.State(None)
        results = [over, prob, area, mask_file, attention, stage, word, heat, status]
        image.change(show_upload, [image], [preview, *results])
        button.click(run, [image, text], results)
        stage.input(redraw, [attention, stage, word], [heat])
        word.input(redraw, [attention, stage, word], [heat])
    return app


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="demo")
@one_line_errors
def main(cfg: DictConfig) -> None:
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, cfg.device)
    shown = checkpoint_examples(cfg.ckpt_path, cfg.dataset.root, int(cfg.examples))
    log.info(shown.note)
    app = build_app(predictor, cfg.threshold, examples=shown)
    if cfg.server_name not in ("127.0.0.1", "localhost"):
        log.warning(
            "tmc-demo listens on %s: anyone who reaches it can run the model on their uploads",
            cfg.server_name,
        )
    app.launch(server_name=cfg.server_name, server_port=int(cfg.port), show_error=True)
