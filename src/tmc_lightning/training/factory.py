"""The datamodule and the module of a run, out of one Hydra config (``run.py`` builds the trainer).

This is the one place that reads the ``text_encoder=`` and ``vision_encoder=`` groups and the
``model.pretrained`` / ``model.freeze_text`` / ``model.freeze_vision`` / ``model.align`` switches: it turns them into resolved encoder settings
(models see only those) and picks the tokenizer from the same settings. Every section the
code reads (``model``, ``dataset``, ``optim``, ``loss``, ``perf``) is checked key by key first,
so a misspelt override is an error at start rather than a silent default.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from tmc_lightning.data.datamodule import (
    TextSegDataModule,
    datamodule_from_config,
    datamodule_keys,
)
from tmc_lightning.errors import MOVED_KEYS, ConfigError, check_keys
from tmc_lightning.models import model_class
from tmc_lightning.training.budget import budget_config
from tmc_lightning.training.module import SegmentationModule
from tmc_lightning.training.semi import attach, configure_datamodule, semi_config
from tmc_lightning.training.settings import LossConfig, OptimConfig, PerfConfig, section
from tmc_lightning.utils import on_gpu


# -- text: resolved once --------------------------------------------------------------------
def text_choice(text_encoder: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``model.text`` settings a ``text_encoder=`` choice (conf/text_encoder/) names."""
    if not text_encoder:
        return None
    choice = dict(text_encoder)
    if "path" in choice:
        path = choice.pop("path")
        if path in (None, "", "???"):
            raise ConfigError(
                "text_encoder=local needs the encoder's folder: add text_encoder.path=/path/to/dir "
                "(a Hugging Face model folder: config.json, weights and tokenizer files)"
            )
        choice["name"] = str(path)
    if not choice.get("name"):
        raise ConfigError(
            f"text_encoder={text_encoder} names no encoder: set text_encoder.name=<hub name> "
            "or use text_encoder=local text_encoder.path=/path/to/dir"
        )
    check_keys(choice, ("name", "pretrained", "freeze", "trust_remote_code"), "text_encoder")
    return choice


def vision_choice(vision_encoder: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``model.vision`` settings a ``vision_encoder=`` choice (conf/vision_encoder/) names."""
    if not vision_encoder:
        return None
    choice = dict(vision_encoder)
    check_keys(choice, ("name", "pretrained", "checkpoint", "freeze"), "vision_encoder")
    for key in ("name", "checkpoint"):
        if choice.get(key) == "???":
            raise ConfigError(
                f"vision_encoder=local needs vision_encoder.{key}=...: the timm model name "
                "(e.g. convnext_tiny) and its weights file (.safetensors / .pth state dict)"
            )
    # A choice is the backbone as published: none of the preset's Swin size overrides.
    return {**dict.fromkeys(("embed_dim", "depths", "num_heads", "window_size")), **choice}


def model_kwargs(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """The registry name and the network's keyword overrides, switches resolved."""
    values = OmegaConf.to_container(cfg.model, resolve=True)
    name = values.pop("name")
    choices = {
        "text": text_choice(values.pop("text_encoder", None)),
        "vision": vision_choice(values.pop("vision_encoder", None)),
    }
    pretrained = values.pop("pretrained", None)
    freeze = {"text": values.pop("freeze_text", None), "vision": values.pop("freeze_vision", None)}
    align = values.pop("align", None)  # with the loss weight: losses.alignment_on
    sample = next(iter(model_class(name).presets.values()), None)
    for key in ("text", "vision"):
        if not hasattr(sample, key):
            continue
        # The group's choice first, explicit model.<key> settings on top, then the switches.
        settings = {**(choices[key] or {}), **(values.get(key) or {})}
        if pretrained is not None:
            settings["pretrained"] = pretrained
        if freeze[key] is not None:
            settings["freeze"] = freeze[key]
        if settings:
            values[key] = settings
    if align is not None and hasattr(sample, "align"):
        values["align"] = align
    if pretrained is not None and hasattr(sample, "pretrained"):
        values["pretrained"] = pretrained  # e.g. TransUNet's own ResNet switch
    return name, values


def tokenizer_for(cfg: DictConfig) -> str | None:
    """A pretrained text encoder brings its own tokenizer; otherwise None (built from the data)."""
    name, kwargs = model_kwargs(cfg)
    cls = model_class(name)
    if not cls.uses_text:
        return None
    text = cls.make_config(kwargs).text
    return text.name if text.pretrained else None


# -- builders -------------------------------------------------------------------------------
def check_config(cfg: DictConfig) -> None:
    """Every section the code reads, key by key; raises :class:`ConfigError` on the first typo."""
    name, kwargs = model_kwargs(cfg)
    model_class(name).make_config(kwargs)
    for key, schema in (("optim", OptimConfig), ("loss", LossConfig), ("perf", PerfConfig)):
        section(cfg, key, schema)
    semi_config(cfg).check(model_class(name).uses_text)  # semi=... (training/semi.py)
    budget_config(cfg)
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    for key in MOVED_KEYS:  # a run saved before the recipe moved: its optim/loss value won then too
        dataset.pop(key, None)
    check_keys(dataset, datamodule_keys(dataset.get("name")), "dataset")


def make_datamodule(cfg: DictConfig) -> TextSegDataModule:
    """The run's DataModule, with the text encoder's tokenizer when it is pretrained."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    dm = datamodule_from_config(dataset, tokenizer_for(cfg))
    configure_datamodule(cfg, dm)  # semi=...: unlabelled images per step
    return dm


def make_module(cfg: DictConfig, dm: TextSegDataModule) -> SegmentationModule:
    name, kwargs = model_kwargs(cfg)
    if model_class(name).uses_text:
        kwargs["vocab_size"] = dm.vocab_size
    optim, loss = section(cfg, "optim", OptimConfig), section(cfg, "loss", LossConfig)
    perf = section(cfg, "perf", PerfConfig)
    module = SegmentationModule(
        model_name=name,
        model_kwargs=kwargs,
        dice_weight=loss.dice_weight,
        align_weight=loss.align_weight,
        optimizer=optim.name,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        scheduler=optim.scheduler,
        warmup_epochs=optim.warmup_epochs,
        max_epochs=cfg.trainer.max_epochs,
        min_lr_ratio=optim.min_lr_ratio,
        encoder_lr_ratio=optim.encoder_lr_ratio,
        seed=cfg.seed,
        channels_last=use_channels_last(cfg),
        compile=bool(perf.compile),
        sdpa=bool(perf.sdpa),
    )
    attach(cfg, module, model_class(name).uses_text)  # fewer masks (training/semi.py)
    return module


def use_channels_last(cfg: DictConfig) -> bool:
    """``perf.channels_last``: true, false, or auto (what tmc-bench measured as faster).

    auto: on GPUs, yes; on CPUs, yes for the narrow ``tiny``/``small`` presets and no for
    ``paper``, whose wide full-resolution convolutions ran faster in NCHW on the 2-core CPU
    (experiments/bench_cpu/bench_cpu.md).
    """
    # select(): a run resumed from a config saved before the perf section still loads
    value = OmegaConf.select(cfg, "perf.channels_last", default=False)
    if str(value).lower() != "auto":
        return bool(value)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    return on_gpu(accelerator) or OmegaConf.select(cfg, "model.preset", default="small") != "paper"
