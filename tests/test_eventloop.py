"""Choosing the event loop of a relay or controller process."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys

import pytest

from stemflow import eventloop

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_auto_is_uvloop_where_installed():
    assert eventloop.resolve("auto") == ("uvloop" if HAVE_UVLOOP else "asyncio")


def test_unknown_loop_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, uvloop, asyncio"):
        eventloop.resolve("trio")


def test_missing_uvloop_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install uvloop"):
        eventloop.resolve("uvloop")
    assert eventloop.resolve("auto") == "asyncio"


@pytest.mark.parametrize("name", ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not HAVE_UVLOOP, reason="uvloop is not installed"))])
def test_run_runs_on_the_named_loop(name):
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(loop_module(), name).split(".")[0] == name


def test_relay_cli_refuses_an_unknown_loop():
    p = subprocess.run([sys.executable, "-m", "stemflow.cli", "relay", "--dc", "a", "--listen",
                        "127.0.0.1:0", "--controller", "127.0.0.1:1", "--loop", "trio"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--loop" in p.stderr
