"""What every command line shares: a user's mistake is one ``error:`` line and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from tmc_lightning.data.layouts import DataError
from tmc_lightning.errors import ConfigError, EncoderUnavailableError
from tmc_lightning.inference.checkpoint import CheckpointError

# Mistakes in what the user passed (settings, data, weights, checkpoints), not bugs: each
# message already names the file or key and says how to fix it, so no traceback follows.
USER_ERRORS = (ConfigError, DataError, EncoderUnavailableError, CheckpointError)


def one_line_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main``; a user error prints ``error: <message>`` to stderr and exits with 2."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapped
