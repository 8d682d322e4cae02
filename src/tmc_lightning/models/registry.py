"""Models chosen by name: ``build_model("tmc", **kwargs)``.

Every registered network maps ``(image, input_ids, attention_mask)`` to logits ``(B, 1, H, W)``
and is built from a preset plus plain keyword overrides (``models/configs.py``), so a
checkpoint can store ``(name, kwargs)`` and never an import path. The registry imports no
model file: the ``models`` package does, which runs their ``@register_model`` decorators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from tmc_lightning.errors import ConfigError

_REGISTRY: dict[str, type] = {}


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator that registers a network under ``name``."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_models() -> list[str]:
    """Names of all registered networks, sorted."""
    return sorted(_REGISTRY)


def model_class(name: str) -> type:
    """The registered class for ``name``; an unknown name lists the known ones."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(
            f"unknown model {name!r}; known models: {known} (set model=<one of them>)"
        )
    return _REGISTRY[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network from its preset (``preset=``) and keyword overrides."""
    cls = model_class(name)
    return cls(cls.make_config(kwargs))
