"""Networks: plain ``nn.Module``s with no Lightning or Hydra imports."""

from tmc_lightning.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
