"""UNet++ baseline (Zhou et al. 2018), built on MONAI's ``BasicUNetPlusPlus``.

Nested, densely connected skip pathways; with deep supervision, each of the four top-row
decoder nodes X^{0,1..4} has its own 1x1 head. The last head is the prediction; the other
three are returned as ``aux_logits`` and trained on by the LightningModule (training only).
"""

from __future__ import annotations

from torch import nn

from tmc_lightning.models.base import SegOutput
from tmc_lightning.models.baselines.common import BaselineNet
from tmc_lightning.models.configs import UNETPP_PRESETS, UNetPPConfig
from tmc_lightning.models.registry import register_model


@register_model("unetpp")
class UNetPlusPlus(BaselineNet):
    """UNet++ with optional deep supervision; ignores the text."""

    presets = UNETPP_PRESETS

    def __init__(self, config: UNetPPConfig) -> None:
        super().__init__(config)
        cfg = config
        # MONAI takes seconds to import and only the MONAI baselines need it.
        from monai.networks.nets import BasicUNetPlusPlus

        if len(cfg.widths) != 5:
            raise ValueError(f"unetpp needs 5 widths (model.widths), got {cfg.widths}")
        self.net = BasicUNetPlusPlus(
            spatial_dims=2,
            in_channels=cfg.in_channels,
            out_channels=1,
            features=(*cfg.widths, cfg.widths[0]),  # the last decoder node keeps the top width
            deep_supervision=cfg.deep_supervision,
            # The paper's blocks: BatchNorm + ReLU (MONAI defaults to instance norm + LeakyReLU).
            norm="batch",
            act="relu",
        )
        if not cfg.deep_supervision:
            # MONAI evaluates the three upper heads either way; identities leave no parameters
            # that never get a gradient.
            for k in (1, 2, 3):
                setattr(self.net, f"final_conv_0_{k}", nn.Identity())

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        heads = self.net(image)  # [X^{0,1}, X^{0,2}, X^{0,3}, X^{0,4}] heads, or just the last
        return SegOutput(logits=heads[-1], aux_logits=list(heads[:-1]))
