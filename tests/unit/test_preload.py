"""cli/preload.py: with TMC_ALLOCATOR=jemalloc the commands re-execute themselves under it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tmc_lightning.cli import preload
from tmc_lightning.cli.preload import DONE, KEEP_PAGES, SWITCH, preload_command

LIB = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
CMD = ["/venv/bin/python", "-m", "tmc_lightning.train", "dataset=qata", "seed=1"]


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(preload, "jemalloc_path", lambda: LIB)
    monkeypatch.setattr(preload.sys, "platform", "linux")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (CMD, True),
        (["/venv/bin/python", "/venv/bin/tmc-eval", "ckpt_path=x"], True),
        (["python3", "-X", "importtime", "-m", "tmc_lightning.evaluate"], True),
        (["/venv/bin/python", "-m", "pytest", "tests"], False),
        (["/venv/bin/python", "-c", "import tmc_lightning.cli"], False),
        (["/venv/bin/python", "experiments/qata_semi/run.py", "--commit"], False),
    ],
)
def test_only_commands_re_execute(argv, expected):
    assert preload.started_as_command(argv) is expected


ASK = {SWITCH: "jemalloc"}


def test_glibc_is_the_default(installed):
    # jemalloc keeps every arena's peak: 8.3 GiB against glibc's 2.7 over a short QaTa run
    assert preload_command({}, CMD) is None
    assert preload_command({SWITCH: "glibc"}, CMD) is None
    assert preload_command({SWITCH: ""}, CMD) is None


def test_a_command_restarts_once_with_the_library_and_its_settings(installed):
    argv, env = preload_command({"PATH": "/bin", SWITCH: "JEmalloc"}, CMD)
    assert argv == [sys.executable, *CMD[1:]]  # the same command line, this interpreter
    assert env["LD_PRELOAD"] == LIB and env["MALLOC_CONF"] == KEEP_PAGES and env[DONE] == "1"
    assert env["PATH"] == "/bin"
    assert preload_command(env, CMD) is None  # the restarted process goes on


def test_the_users_settings_win(installed):
    mine = {**ASK, "LD_PRELOAD": "/opt/libtcmalloc.so.4"}  # their own allocator
    assert preload_command(mine, CMD) is None
    _, env = preload_command({**ASK, "MALLOC_CONF": "narenas:1"}, CMD)
    assert env["MALLOC_CONF"] == "narenas:1" and env["LD_PRELOAD"] == LIB


def test_a_bad_switch_or_a_missing_library_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(preload, "JEMALLOC_PATHS", (str(tmp_path / "libjemalloc.so.2"),))
    with pytest.raises(ValueError, match="TMC_ALLOCATOR='tcmalloc' is not one of glibc, jemalloc"):
        preload_command({SWITCH: "tcmalloc"}, CMD)
    with pytest.raises(ValueError, match="apt install libjemalloc2"):
        preload_command(ASK, CMD)  # not installed
    assert preload_command({SWITCH: "tcmalloc"}, ["python", "-m", "pytest"]) is None  # no command
    (tmp_path / "libjemalloc.so.2").touch()
    assert preload_command(ASK, CMD)[1]["LD_PRELOAD"] == str(tmp_path / "libjemalloc.so.2")


def test_a_failed_restart_goes_on(installed, monkeypatch):
    def refuse(*args):
        raise OSError("no such file")

    monkeypatch.setattr(preload.os, "execve", refuse)
    monkeypatch.setattr(preload.sys, "orig_argv", CMD)
    monkeypatch.delenv(DONE, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv(SWITCH, "jemalloc")
    preload.preload_jemalloc()  # no exception: the command carries on under glibc
    assert os.environ[DONE] == "1"


def test_a_real_command_says_what_is_wrong_and_stops(monkeypatch):
    cmd = [sys.executable, "-m", "tmc_lightning.cli.preload"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", DONE)}
    got = subprocess.run(cmd, env={**env, SWITCH: "fast"}, capture_output=True, text=True)
    assert got.returncode == 1 and got.stdout == ""
    assert got.stderr.strip().splitlines() == [
        "error: TMC_ALLOCATOR='fast' is not one of glibc, jemalloc: unset it (glibc) or set "
        "TMC_ALLOCATOR=jemalloc"
    ]


@pytest.mark.skipif(preload.jemalloc_path() is None, reason="libjemalloc2 is not installed here")
def test_a_real_command_runs_under_jemalloc_when_asked():
    cmd = [sys.executable, "-m", "tmc_lightning.cli.preload"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", DONE)}
    env.pop(SWITCH, None)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["glibc", "malloc"]  # the default
    on = {**env, SWITCH: "jemalloc"}
    out = subprocess.run(cmd, env=on, capture_output=True, text=True, check=True).stdout
    assert "libjemalloc" in out and KEEP_PAGES in out
