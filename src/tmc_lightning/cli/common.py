"""What every command line shares: one error-to-exit-code convention, and sub-command dispatch.

Exit codes of every ``tmc-*`` command:

- 0: done;
- 1: the command ran and found a problem in what it inspected (``tmc-data check`` and
  ``tmc-data prepare`` reports, a failed study run);
- 2: a user's mistake (a setting, the data, missing weights, a checkpoint, an export target):
  one ``error:`` line that names the file or key and says how to fix it, no traceback;
- 3: training stopped at a non-finite loss (the run folder keeps its last finite weights);
- 130 / 143: training interrupted by SIGINT / SIGTERM after saving ``last.ckpt``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from tmc_lightning.data.layouts import DataError
from tmc_lightning.errors import ConfigError, EncoderUnavailableError
from tmc_lightning.export.onnx import ExportError
from tmc_lightning.inference.checkpoint import CheckpointError
from tmc_lightning.training.callbacks import NonFiniteError
from tmc_lightning.training.interrupt import TrainingInterrupted

# Mistakes in what the user passed (settings, data, weights, checkpoints), not bugs: each
# message already names the file or key and says how to fix it, so no traceback follows.
USER_ERRORS = (ConfigError, DataError, EncoderUnavailableError, CheckpointError, ExportError)


def one_line_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main`` under the exit-code convention above: one line on stderr, no traceback."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except NonFiniteError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(3) from None
        except TrainingInterrupted as stop:
            print(f"interrupted: {stop}", file=sys.stderr)
            raise SystemExit(stop.exit_code) from None

    return wrapped


def dispatch(commands: dict[str, Callable[[], Any]], usage: str) -> None:
    """``prog SUB [args]``: run ``commands[SUB]`` with the rest of the command line.

    ``prog``, ``prog -h`` and ``prog --help`` print ``usage`` (exit 0 for the help flags, 2
    when nothing was given); an unknown sub-command is one error naming the valid ones.
    """
    if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help"):
        print(usage)
        raise SystemExit(0)
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        given = f"unknown command {sys.argv[1]!r}; " if len(sys.argv) >= 2 else ""
        print(f"error: {given}choose one of: {', '.join(commands)}\n{usage}", file=sys.stderr)
        raise SystemExit(2)
    command = commands[sys.argv.pop(1)]
    command()
