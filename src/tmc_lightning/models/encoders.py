"""Staged encoders: a timm Swin and a Hugging Face BERT-like model, run one stage at a time.

TMC interleaves the two encoders (stage i of each, then cross-attention), so both expose
``embed`` (stage-0 input) and ``stage(i, x)`` instead of a single ``forward``.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from tmc_lightning.models.hub import EncoderUnavailableError, hub_reachable, load_hf


class StagedSwin(nn.Module):
    """A timm Swin Transformer split into patch embedding + 4 stages (strides 4, 8, 16, 32)."""

    def __init__(
        self,
        name: str = "swin_tiny_patch4_window7_224",
        pretrained: bool = False,
        img_size: int = 224,
        checkpoint: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"num_classes": 0, "img_size": img_size, **overrides}
        if pretrained and checkpoint:
            kwargs["pretrained_cfg_overlay"] = {"file": checkpoint}
        elif pretrained and not hub_reachable():
            raise EncoderUnavailableError(
                f"Could not load pretrained visual encoder {name!r} (model.vision.name): the "
                "Hugging Face hub is unreachable. Download the timm weights file elsewhere and set "
                "+model.vision.checkpoint=/path/to/weights.safetensors, or train from random weights "
                "with model.pretrained=false."
            )
        self.model = timm.create_model(name, pretrained=pretrained, **kwargs)
        self.model.head = nn.Identity()
        self.model.norm = nn.Identity()  # unused: each stage's output feeds MCM / the U-Net
        self.channels: list[int] = [info["num_chs"] for info in self.model.feature_info]
        assert len(self.channels) == 4, "TMC expects a 4-stage Swin"

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.patch_embed(image)  # (B, H/4, W/4, C0), channels last

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.model.layers[i](x)  # (B, H_i, W_i, C_i)


class StagedTextEncoder(nn.Module):
    """A BERT-like encoder whose transformer layers are split evenly into ``num_stages`` groups.

    ``name`` is a hub name or a local directory; with ``name=None`` a randomly initialised BERT
    is built from ``overrides`` (hidden_size, num_hidden_layers, ...), which needs no download.
    """

    def __init__(
        self,
        name: str | None = None,
        pretrained: bool = False,
        freeze: bool = False,
        num_stages: int = 4,
        embeddings_only: bool = False,
        vocab_size: int | None = None,
        config: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, BertConfig

        if pretrained and name is None and config is None:
            raise ValueError(
                "text encoder: pretrained=true needs a model name or local directory; "
                "set +model.text.name=bert-base-uncased (or a path), or model.pretrained=false"
            )
        if vocab_size is not None and (name is None or not pretrained):
            overrides["vocab_size"] = vocab_size
        if config is not None:  # a resolved config stored in a checkpoint: no hub access
            cfg = AutoConfig.for_model(**{**config, **overrides})
            model = AutoModel.from_config(cfg, add_pooling_layer=False, attn_implementation="sdpa")
        elif name is None:
            model = AutoModel.from_config(
                BertConfig(**overrides), add_pooling_layer=False, attn_implementation="sdpa"
            )
        elif pretrained:
            model = load_hf(
                lambda n, **kw: AutoModel.from_pretrained(
                    n, add_pooling_layer=False, attn_implementation="sdpa", **kw
                ),
                name,
                "text encoder",
                "+model.text.name",
            )
        else:
            cfg = load_hf(
                lambda n, **kw: AutoConfig.from_pretrained(n, **overrides, **kw),
                name,
                "text encoder config",
                "+model.text.name",
            )
            model = AutoModel.from_config(cfg, add_pooling_layer=False, attn_implementation="sdpa")
        if not hasattr(model, "embeddings") or not hasattr(
            getattr(model, "encoder", None), "layer"
        ):
            raise ValueError(
                f"text encoder {name!r} is not BERT-like (needs .embeddings and .encoder.layer)"
            )
        layers = model.encoder.layer
        if embeddings_only:
            model.encoder.layer = nn.ModuleList()
        elif len(layers) % num_stages != 0:
            raise ValueError(
                f"text encoder has {len(layers)} layers, not divisible into {num_stages} stages"
            )
        self.model = model
        self.hidden_size: int = model.config.hidden_size
        self.per_stage = len(model.encoder.layer) // num_stages
        self.num_stages = num_stages
        if freeze:
            self.requires_grad_(False)

    def resolved_config(self) -> dict[str, Any]:
        """The plain config dict that rebuilds this encoder without the hub."""
        return self.model.config.to_dict()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embeddings(input_ids=input_ids)  # (B, T, D)

    @staticmethod
    def attention_bias(attention_mask: torch.Tensor) -> torch.Tensor:
        # (B, T) 1 = word, 0 = pad  ->  boolean (B, 1, 1, T) for the SDPA attention path;
        # a boolean mask stays valid under autocast, where an additive float one would not.
        return attention_mask[:, None, None, :].bool()

    def stage(self, i: int, x: torch.Tensor, attention_bias: torch.Tensor) -> torch.Tensor:
        for layer in self.model.encoder.layer[i * self.per_stage : (i + 1) * self.per_stage]:
            out = layer(x, attention_mask=attention_bias)
            x = out[0] if isinstance(out, tuple) else out
        return x
