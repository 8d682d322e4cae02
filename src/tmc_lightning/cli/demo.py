"""``tmc-demo ckpt_path=...``: a Gradio page that segments an uploaded image from a typed prompt.

Needs the ``demo`` extra (``pip install -e '.[demo]'``). Binds to 127.0.0.1 unless
``server_name`` says otherwise: the page runs the model on whatever anyone who reaches it
uploads, so expose it only on a network you trust.
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tmc_lightning.cli.common import USER_ERRORS, one_line_errors
from tmc_lightning.errors import ConfigError
from tmc_lightning.inference.predictor import Predictor
from tmc_lightning.inference.segment import segment
from tmc_lightning.utils import CONF_DIR

log = logging.getLogger("tmc_lightning.demo")


def examples() -> list[dict[str, str]]:
    """The bundled synthetic examples: image path and the text it was generated with."""
    folder = resources.files("tmc_lightning") / "assets" / "examples"
    listing = json.loads((folder / "examples.json").read_text())
    return [{"image": str(folder / e["image"]), "text": e["text"]} for e in listing["examples"]]


def build_app(predictor: Predictor, threshold: float = 0.5, title: str = "TMC demo") -> Any:
    """The Gradio Blocks app around ``predictor``."""
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError(
            "tmc-demo needs Gradio: pip install -e '.[demo]' (or make demo)"
        ) from None
    shown = examples()
    out_dir = Path(tempfile.mkdtemp(prefix="tmc-demo-"))
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    hint = predictor.convention_note()
    if predictor.accepts_empty_prompt and predictor.uses_text:
        hint += "; this model was trained with text dropout and also segments without a prompt"

    def run(path: str | None, text: str):
        try:
            result = segment(predictor, path, text, threshold)
        except USER_ERRORS as err:  # the message in the page, never a stack trace
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - anything else, still one readable line
            log.exception("segmentation failed")
            raise gr.Error(f"could not segment this image: {err}", print_exception=False) from None
        stem = Path(path).stem if path else "image"
        request = Path(tempfile.mkdtemp(dir=out_dir))  # one per request: never another's mask
        mask_path = result.save_mask(request / f"{stem}_mask.png")
        return (
            result.overlay,
            result.prob_image(),
            result.area_text(),
            result.heatmaps,
            str(mask_path),
        )

    with gr.Blocks(title=title) as app:
        gr.Markdown(
            f"## {title}: `{predictor.module.hparams.model_name}`\n"
            "Upload an image (PNG, JPEG, TIFF, BMP; gray, colour or 16-bit), type a prompt, "
            f"press **Segment**. {hint[0].upper() + hint[1:]}."
        )
        with gr.Row():
            with gr.Column():
                image = gr.File(
                    label="Image",
                    file_types=[".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"],
                    type="filepath",
                    elem_id="image",
                )
                text = gr.Textbox(label="Prompt", value=shown[0]["text"], lines=2, elem_id="prompt")
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                gr.Examples(
                    [[e["image"], e["text"]] for e in shown],
                    inputs=[image, text],
                    label="Synthetic examples (the embedded set's generator)",
                )
            with gr.Column():
                over = gr.Image(label="Overlay", type="pil", elem_id="overlay")
                area = gr.Textbox(label="Mask", interactive=False, elem_id="area")
                mask_file = gr.File(label="Mask (PNG, the image's size)", elem_id="mask")
        with gr.Row():
            prob = gr.Image(label="Probability", type="pil", elem_id="prob")
            heat = gr.Image(label="Cross-attention per stage (tmc-explain)", type="pil")
        button.click(run, [image, text], [over, prob, area, heat, mask_file])
    return app


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="demo")
@one_line_errors
def main(cfg: DictConfig) -> None:
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, cfg.device)
    app = build_app(predictor, cfg.threshold)
    if cfg.server_name not in ("127.0.0.1", "localhost"):
        log.warning(
            "tmc-demo listens on %s: anyone who reaches it can run the model on their uploads",
            cfg.server_name,
        )
    app.launch(server_name=cfg.server_name, server_port=int(cfg.port), show_error=True)
