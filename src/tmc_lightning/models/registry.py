"""Models chosen by name: ``build_model("tmc", **kwargs)``.

Every registered network maps ``(image, input_ids, attention_mask)`` to logits ``(B, 1, H, W)``
and is built from plain keyword arguments only, so a checkpoint can store
``(name, kwargs)`` and never an import path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class or factory decorator that registers a network under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of all registered networks, sorted."""
    _import_builtin()
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network by name; an unknown name lists the known ones."""
    _import_builtin()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown model {name!r}; known models: {known} (set model=<one of them>)")
    return _REGISTRY[name](**kwargs)


def _import_builtin() -> None:
    # Importing the modules runs their @register_model decorators.
    from tmc_lightning.models import lvit, tmc, unet  # noqa: F401
    from tmc_lightning.models.baselines import attunet, transunet, uctransnet, unetpp  # noqa: F401


def model_class(name: str) -> Callable[..., nn.Module]:
    """The registered class (or factory) for ``name``."""
    _import_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
