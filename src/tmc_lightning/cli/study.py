"""``tmc-study NAME [options] [-- overrides]``: run (or continue) the resumable study NAME.

A study is declared in ``experiments/<NAME>/run.py`` as a module-level ``STUDY``
(:class:`tmc_lightning.training.study.Study`); this command loads it and hands the rest of the
command line to :func:`tmc_lightning.training.study.main` (``--rows``, ``--seeds``,
``--commit``, ...). ``tmc-study --list`` names the studies this checkout declares.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from tmc_lightning.training.study import REPO, Study
from tmc_lightning.training.study import main as run_study


def studies() -> dict[str, Path]:
    """Every ``experiments/<name>/run.py`` that declares a ``STUDY``, by name."""
    found = {}
    for path in sorted((REPO / "experiments").glob("*/run.py")):
        if re.search(r"^STUDY = Study\b", path.read_text(), re.M):
            found[path.parent.name] = path
    return found


def load(path: Path) -> Study:
    spec = importlib.util.spec_from_file_location(f"study_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = studies()
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("usage: tmc-study NAME [--rows ROW ...] [--seeds N ...] [--commit] [-- overrides]")
        print("studies:", " ".join(known) or "(none in this checkout)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in known:
        print(
            f"error: no study {name!r}: experiments/{name}/run.py does not declare STUDY; "
            f"choose one of: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    return run_study(load(known[name]), rest)


if __name__ == "__main__":
    sys.exit(main())
