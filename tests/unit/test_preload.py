"""cli/preload.py: the commands re-execute themselves under jemalloc where it is installed."""

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


def test_a_command_restarts_once_with_the_library_and_its_settings(installed):
    argv, env = preload_command({"PATH": "/bin"}, CMD)
    assert argv == [sys.executable, *CMD[1:]]  # the same command line, this interpreter
    assert env["LD_PRELOAD"] == LIB and env["MALLOC_CONF"] == KEEP_PAGES and env[DONE] == "1"
    assert env["PATH"] == "/bin"
    assert preload_command(env, CMD) is None  # the restarted process goes on


def test_the_users_settings_win(installed):
    assert preload_command({SWITCH: "glibc"}, CMD) is None
    assert preload_command({SWITCH: "GLIBC"}, CMD) is None
    assert preload_command({"LD_PRELOAD": "/opt/libtcmalloc.so.4"}, CMD) is None  # their own
    _, env = preload_command({"MALLOC_CONF": "narenas:1"}, CMD)
    assert env["MALLOC_CONF"] == "narenas:1" and env["LD_PRELOAD"] == LIB


def test_gpu_machines_and_machines_without_the_library_stay_on_glibc(monkeypatch, tmp_path):
    monkeypatch.setattr(preload, "JEMALLOC_PATHS", (str(tmp_path / "libjemalloc.so.2"),))
    monkeypatch.setattr(preload, "GPU_DEVICE", tmp_path / "nvidiactl")
    assert preload.jemalloc_path() is None  # not installed
    (tmp_path / "libjemalloc.so.2").touch()
    assert preload.jemalloc_path() == str(tmp_path / "libjemalloc.so.2")
    (tmp_path / "nvidiactl").touch()
    assert preload.jemalloc_path() is None  # an NVIDIA GPU here: glibc, as measured so far


def test_a_failed_restart_goes_on(installed, monkeypatch):
    def refuse(*args):
        raise OSError("no such file")

    monkeypatch.setattr(preload.os, "execve", refuse)
    monkeypatch.setattr(preload.sys, "orig_argv", CMD)
    monkeypatch.delenv(DONE, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(SWITCH, raising=False)
    preload.preload_jemalloc()  # no exception: the command carries on under glibc
    assert os.environ[DONE] == "1"


def test_nothing_happens_without_the_library(monkeypatch):
    monkeypatch.setattr(preload, "jemalloc_path", lambda: None)
    assert preload_command({}, CMD) is None


@pytest.mark.skipif(preload.jemalloc_path() is None, reason="libjemalloc2 is not installed here")
def test_a_real_command_runs_under_jemalloc_unless_switched_off():
    cmd = [sys.executable, "-m", "tmc_lightning.cli.preload"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", DONE)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert "libjemalloc" in out and KEEP_PAGES in out
    off = {**env, SWITCH: "glibc"}
    out = subprocess.run(cmd, env=off, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["glibc", "malloc"]
