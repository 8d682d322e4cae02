"""The README and docs/ point at things that exist, and every command they show answers --help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "experiments/README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
# A file path as the pages write it: folders and a name with one of these endings.
PATH = re.compile(
    r"^(?:\.\./)*[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*\.(?:py|md|yaml|json|csv|png|toml|ckpt|txt)$"
)
# Where a page's bare path may be rooted: its own folder, the repository, the package, conf/.
ROOTS = ("", ".", "src/tmc_lightning", "conf", "experiments", "tests")
# Things the pages name that a run or a user creates, never the repository.
MADE_BY_RUNS = (
    "outputs/", "multirun/", "checkpoints/", "logs/", "metrics.json", "config.yaml", "report.md",
    "runs.csv",
)  # fmt: skip


def page_ids(pages):
    return [str(p.relative_to(REPO)) for p in pages]


def exists_from(page: Path, target: str) -> bool:
    target = target.split("#")[0]
    if not target:
        return True
    candidates = [page.parent / target] + [REPO / root / target for root in ROOTS]
    return any(c.exists() for c in candidates)


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_relative_link_exists(page):
    text = page.read_text()
    broken = [
        t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t) and not exists_from(page, t)
    ]
    assert not broken, f"{page.relative_to(REPO)} links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_file_path_named_exists(page):
    missing = []
    for token in CODE.findall(page.read_text()):
        token = token.strip()
        if not PATH.match(token) or any(part in token for part in MADE_BY_RUNS):
            continue
        if "/" not in token and not token.endswith((".py", ".yaml")):
            continue  # a bare file name (metrics.csv) is a kind of file, not a path
        if not exists_from(page, token):
            missing.append(token)
    assert not missing, f"{page.relative_to(REPO)} names files that do not exist: {missing}"


def shown_commands() -> set[str]:
    words = set()
    for page in PAGES:
        words |= set(re.findall(r"(?<![\w-])(tmc-[a-z]+)(?![\w-])", page.read_text()))
    return words - {"tmc-lightning", "tmc-spec"}


def test_every_command_shown_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert shown_commands() <= set(scripts), shown_commands() - set(scripts)


HELP_PROBE = r"""
import contextlib, importlib, io, json, sys
out = {}
for name, target, extra in json.loads(sys.argv[1]):
    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    sys.argv = [name, *extra, "--help"]
    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            ret = fn()
            code = ret if isinstance(ret, int) else 0
        except SystemExit as stop:
            code = stop.code or 0
    out[" ".join([name, *extra])] = [code, buf.getvalue()[:300]]
print(json.dumps(out))
"""


def test_every_command_shown_answers_help():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    subcommands = {"tmc-data": ["check"], "tmc-export": ["onnx"], "tmc-weights": []}
    calls = []
    for name in sorted(shown_commands()):
        calls.append([name, scripts[name], []])
        for sub in subcommands.get(name, []):
            calls.append([name, scripts[name], [sub]])
    proc = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, json.dumps(calls)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = {cmd: text for cmd, (code, text) in answers.items() if code != 0 or not text.strip()}
    assert not failed, failed
