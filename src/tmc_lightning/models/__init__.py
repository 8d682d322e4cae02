"""Networks: plain ``nn.Module``s built from typed configs, with no Lightning or Hydra imports.

Importing this package imports every model file, which registers it (timm's way: the
registry itself imports none of them).
"""

from tmc_lightning.models import lvit, tmc, unet  # noqa: F401  (register the networks)
from tmc_lightning.models.baselines import attunet, transunet, uctransnet, unetpp  # noqa: F401
from tmc_lightning.models.registry import build_model, list_models, model_class, register_model

__all__ = ["build_model", "list_models", "model_class", "register_model"]
