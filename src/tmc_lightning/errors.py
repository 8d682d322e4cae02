"""Errors shared by every stage: a misspelt key fails at start, never silently; weights offline."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A setting is unknown or malformed; the message names it and says what is valid."""


class EncoderUnavailableError(RuntimeError):
    """Pretrained weights could not be found locally and cannot be downloaded here."""


def check_keys(given: Iterable[str], valid: Iterable[str], where: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``given`` not in ``valid``.

    The message names the key, suggests the nearest valid one (a typo is the usual cause) and
    lists them all, e.g. ``model.base_widht: unknown key; did you mean base_width?``.
    """
    valid = sorted(set(valid))
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    key = unknown[0]
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}? " if near else ""
    more = f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
    raise ConfigError(f"{where}.{key}: unknown key{more}; {hint}valid keys: {', '.join(valid)}")


# dataset: keys that moved to conf/recipe/ (where optim.lr and loss.* are set per dataset).
# Configs saved in run folders and checkpoints before the move still carry them under dataset:
# beside the optim/loss values that won then too; readers drop them.
MOVED_KEYS = {
    "lr": "optim.lr",
    "dice_weight": "loss.dice_weight",
    "align_weight": "loss.align_weight",
}
