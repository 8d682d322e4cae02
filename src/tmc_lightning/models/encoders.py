"""A Hugging Face text encoder run one stage at a time (the visual side: ``backbones.py``).

TMC interleaves the two encoders (stage i of each, then cross-attention), so both expose
``embed`` (stage-0 input) and ``stage(i, x)`` instead of a single ``forward``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from tmc_lightning.hub import load_hf
from tmc_lightning.models.attention import hf_attn_implementation
from tmc_lightning.models.configs import TextConfig


class StagedTextEncoder(nn.Module):
    """A text encoder whose transformer layers are split into ``num_stages`` groups.

    L layers split as evenly as possible, the first ``L mod num_stages`` stages taking one more
    (6 layers: 2, 2, 1, 1; 12: 3 each). Families: BERT-like bidirectional encoders (BERT,
    RoBERTa, ELECTRA: ``.embeddings`` + ``.encoder.layer``; DistilBERT: ``.transformer.layer``)
    and CLIP's text tower (``CLIPTextModel``: ``.embeddings`` + ``.encoder.layers`` +
    ``.final_layer_norm``; causal). ``name`` is a hub name or a local directory; a full CLIP
    checkpoint (``openai/clip-vit-base-patch32``) contributes only its text tower. With
    ``name=None`` a randomly initialised BERT is built from the config's sizes (hidden_size,
    num_hidden_layers, ...), which needs no download.

    CLIP's stages run pre-norm layers under a causal + padding mask; its ``final_layer_norm``
    closes the last stage, so the last stage's output is CLIP's ``last_hidden_state``. The
    sentence token (:meth:`sentence_token`) is BERT's ``[CLS]`` (position 0) or, for CLIP, the last real
    token: the end-of-text token whose state CLIP itself pools. Under CLIP's causal mask
    position 0 sees only itself, so it carries nothing about the sentence.
    """

    def __init__(
        self,
        config: TextConfig,
        vocab_size: int | None = None,
        num_stages: int = 4,
        embeddings_only: bool = False,
    ) -> None:
        super().__init__()
        self.model = load_text_model(config, vocab_size)
        self.is_clip = self.model.config.model_type == CLIP_TEXT
        self._layer_path = next((p for p in LAYER_PATHS if _get(self.core, p) is not None), None)
        if self._layer_path is None or not hasattr(self.core, "embeddings"):
            raise ValueError(
                f"text encoder {config.name!r} ({self.model.config.model_type}) has no "
                "embeddings and transformer layers where BERT, RoBERTa, ELECTRA, DistilBERT or "
                "CLIP keep them; choose one of those families"
            )
        if embeddings_only:  # LViT reads the token embeddings only
            self._set_layers(nn.ModuleList())
            if self.is_clip:
                self.core.final_layer_norm = nn.Identity()
        elif len(self.layers) < num_stages:
            raise ValueError(
                f"text encoder has {len(self.layers)} layers, fewer than the {num_stages} stages"
            )
        self.hidden_size: int = self.model.config.hidden_size
        self.num_stages = num_stages
        self.bounds = stage_bounds(len(self.layers), num_stages)
        # Older CLIP layers take the causal mask as a separate, required argument.
        self._legacy_clip_call = (
            self.is_clip
            and bool(self.layers)
            and "causal_attention_mask" in inspect.signature(self.layers[0].forward).parameters
        )
        if config.freeze:
            self.requires_grad_(False)

    @property
    def core(self) -> nn.Module:
        """The module holding embeddings and encoder (transformers < 5 nests CLIP's once more)."""
        return getattr(self.model, "text_model", self.model) if self.is_clip else self.model

    @property
    def layers(self) -> nn.ModuleList:
        return _get(self.core, self._layer_path)

    def _set_layers(self, layers: nn.ModuleList) -> None:
        parent, _, leaf = self._layer_path.rpartition(".")
        setattr(_get(self.core, parent), leaf, layers)

    def resolved_config(self) -> dict[str, Any]:
        """The plain config dict that rebuilds this encoder without the hub."""
        return self.model.config.to_dict()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.core.embeddings(input_ids=input_ids)  # (B, T, E)
        project = getattr(self.core, "embeddings_project", None)  # ELECTRA: E -> D
        return project(x) if project is not None else x  # (B, T, D)

    def attention_bias(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) 1 = word, 0 = pad  ->  the mask the layers' attention kernel takes.

        BERT: (B, 1, 1, T), every word sees every real word. CLIP: (B, 1, T, T), word t sees
        the real words up to t. SDPA gets a boolean mask, which stays valid under autocast;
        the eager kernel (built under ``attention_kernel(False)``) adds its mask to the
        scores, so it gets 0 / float32-min, which promotes half-precision scores to float32.
        """
        keep = attention_mask[:, None, None, :].bool()
        if self.is_clip:
            t = attention_mask.shape[1]
            causal = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()
            keep = keep & causal  # (B, 1, T, T); position 0 is always real: no row is empty
        if getattr(self.model.config, "_attn_implementation", "sdpa") != "eager":
            return keep
        blocked = torch.finfo(torch.float32).min
        return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, blocked)

    def stage(self, i: int, x: torch.Tensor, attention_bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[self.bounds[i] : self.bounds[i + 1]]:
            if self._legacy_clip_call:
                out = layer(x, attention_bias, None)
            else:
                out = layer(x, attention_mask=attention_bias)
            x = out[0] if isinstance(out, tuple) else out
        if self.is_clip and i == self.num_stages - 1:
            x = self.core.final_layer_norm(x)
        return x

    def sentence_token(self, words: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The sentence token of (B, T, D) word states: (B, D).

        BERT: ``[CLS]`` at position 0. CLIP: the last real token, i.e. the end-of-text token
        the tokenizer appends (padding is on the right and truncation keeps it).
        """
        if not self.is_clip:
            return words[:, 0]
        last = attention_mask.sum(1).clamp_min(1) - 1  # (B,)
        return words[torch.arange(words.shape[0], device=words.device), last]


CLIP_TEXT = "clip_text_model"
# Where each family keeps its transformer layers (relative to the module with the embeddings).
LAYER_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer")


def _get(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part, None)
    return module


def stage_bounds(n_layers: int, n_stages: int) -> list[int]:
    """Layer indices where each stage starts (plus the end): the first ``n mod s`` get one more.

    ``stage_bounds(6, 4) == [0, 2, 4, 5, 6]``: stages of 2, 2, 1 and 1 layers.
    """
    sizes = [n_layers // n_stages + (i < n_layers % n_stages) for i in range(n_stages)]
    return [sum(sizes[:i]) for i in range(n_stages + 1)]


def load_text_model(config: TextConfig, vocab_size: int | None) -> nn.Module:
    """The transformers model ``config`` describes: stored, random-init, or from the hub/a folder.

    ``vocab_size`` (the data's own tokenizer) resizes the embeddings of any encoder that does
    not bring its own pretrained vocabulary.
    """
    from transformers import AutoConfig, BertConfig

    if config.pretrained and config.name is None and config.config is None:
        raise ValueError(
            "text encoder: pretrained=true needs a model name or local directory; "
            "choose one with text_encoder=bert_base|clip|local (text_encoder.path=DIR) or "
            "+model.text.name=bert-base-uncased, or set model.pretrained=false"
        )
    sizes = config.size_overrides()
    if vocab_size is not None and (config.name is None or not config.pretrained):
        sizes["vocab_size"] = vocab_size
    if config.config is not None:  # a resolved config stored in a checkpoint: no hub access
        stored = {**config.config, **({"vocab_size": vocab_size} if vocab_size else {})}
        return _from_config(AutoConfig.for_model(**stored))
    if config.name is None:
        return _from_config(BertConfig(**sizes))
    remote = {"trust_remote_code": True} if config.trust_remote_code else {}
    load = lambda n, **kw: AutoConfig.from_pretrained(n, **remote, **kw)  # noqa: E731
    hub_cfg = _text_config(load_hf(load, config.name, "text encoder"))
    if not config.pretrained:
        if remote:  # the model's own config class: resize it in place
            for key, value in sizes.items():
                setattr(hub_cfg, key, value)
            return _from_config(hub_cfg, **remote)
        return _from_config(AutoConfig.for_model(**{**hub_cfg.to_dict(), **sizes}))
    return load_hf(
        lambda n, **kw: _from_pretrained(n, hub_cfg, **remote, **kw), config.name, "text encoder"
    )


def _text_config(cfg: Any) -> Any:
    """A full CLIP config (text + vision towers) -> its text config; others unchanged."""
    return cfg.text_config if cfg.model_type == "clip" else cfg


def _from_config(cfg: Any, **kwargs: Any) -> nn.Module:
    from transformers import AutoModel, CLIPTextModel

    cfg = _text_config(cfg)
    if cfg.model_type == CLIP_TEXT:
        return CLIPTextModel._from_config(cfg, attn_implementation=hf_attn_implementation())
    return AutoModel.from_config(
        cfg, attn_implementation=hf_attn_implementation(), **_pooler_off(cfg), **kwargs
    )


def _pooler_off(cfg: Any) -> dict[str, Any]:
    """``add_pooling_layer=False`` for the families that have a pooler (BERT, RoBERTa): TMC
    reads token states only, and an unused pooler would get no gradient."""
    from transformers import AutoModel

    try:
        cls = AutoModel._model_mapping[type(cfg)]
    except KeyError:  # a model with its own code (trust_remote_code)
        return {}
    params = inspect.signature(cls.__init__).parameters
    return {"add_pooling_layer": False} if "add_pooling_layer" in params else {}


def _from_pretrained(name: str, cfg: Any, **kwargs: Any) -> nn.Module:
    from transformers import AutoModel, CLIPTextModel
    from transformers.utils import logging as hf_logging

    if cfg.model_type != CLIP_TEXT:
        return AutoModel.from_pretrained(
            name, attn_implementation=hf_attn_implementation(), **_pooler_off(cfg), **kwargs
        )
    # A full CLIP checkpoint also holds the vision tower, which is expected to go unused:
    # keep transformers from listing every one of its weights as "unexpected".
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return CLIPTextModel.from_pretrained(
            name, attn_implementation=hf_attn_implementation(), **kwargs
        )
    finally:
        hf_logging.set_verbosity(verbosity)
