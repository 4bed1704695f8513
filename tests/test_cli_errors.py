"""Bad command lines: each is one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stemflow import cli
from stemflow.client_cli import parse_args as client_args

ROOT = Path(__file__).resolve().parents[1]
TABLE1 = "scenarios/table1-us-east-asia-east.yaml"

BAD = [
    (["relay", "--dc", "a", "--listen", "localhost", "--controller", "127.0.0.1:7000"], "expected HOST:PORT"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "nowhere"], "expected HOST:PORT"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:70000", "--controller", "127.0.0.1:1"], "above 65535"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1", "--interval", "0"],
     "at least 0.1 s"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1", "--interval", "nan"],
     "at least 0.1 s"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1", "--parallel", "0"],
     "between 1 and 256"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1", "--peers", "b"],
     "DC=HOST:PORT"),
    (["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1", "--log-level", "loud"],
     "expected one of"),
    (["controller", "--listen", "7000"], "expected HOST:PORT"),
    (["controller", "--listen", "127.0.0.1:0", "--heartbeat-timeout", "0"], "at least 0.5 s"),
    (["controller", "--listen", "127.0.0.1:0", "--strategy", "fastest"], "unknown strategy 'fastest'"),
    (["pub", "--relay", "localhost", "news", "hi"], "expected HOST:PORT"),
    (["pub", "news", "hi"], "STEMFLOW_RELAY"),
    (["sub", "--relay", "127.0.0.1:1", "--count", "-1", "news"], "--count -1"),
    (["pub", "--relay", "127.0.0.1:1", "chat.*", "hi"], "are wildcards"),
    (["request", "--relay", "127.0.0.1:1", "svc.>", "q"], "are wildcards"),
    (["sub", "--relay", "127.0.0.1:1", "chat.>.typing"], "'>' may only be the last token"),
    (["sub", "--relay", "127.0.0.1:1", "--history", "5", "chat.*"], "not of a pattern"),
    (["emu", TABLE1, "--rate-scale", "0"], "--rate-scale"),
    (["analyze", "sweep", TABLE1, "--sweep", "relay.parallel=1", "--workers", "0"], "between 1 and 64"),
    (["sim", "nope.yaml"], "no shipped scenario of that name"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_invocation_is_one_line(argv, says, capsys, monkeypatch):
    monkeypatch.delenv("STEMFLOW_RELAY", raising=False)
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc not in (0, None), err
    assert says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("stemflow ")
    with pytest.raises(SystemExit) as e:
        cli.main(["sim", "--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("stemflow sim ")


def test_no_help_says_python_dash_m(capsys):
    for command in ("sim", "emu", "analyze", "relay", "controller", "pub", "sub"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert out.startswith(f"usage: stemflow {command}") and "python -m" not in out


def test_every_flag_has_help_and_says_its_default(monkeypatch):
    from stemflow.cli_args import ArgumentParser

    parsers = []

    def capture(self, *args, **kwargs):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(ArgumentParser, "parse_args", capture)
    for command in ("sim", "emu", "analyze", "relay", "controller", "pub", "sub"):
        with pytest.raises(SystemExit):
            cli.main([command, "x"])
    assert len(parsers) == 7
    for p in parsers:
        for action in p._actions:
            if action.dest in ("help", "version"):
                continue
            assert action.help, f"{p.prog} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in action.help, f"{p.prog} {action.option_strings}: default not shown"


def test_strategy_takes_several_names_in_sim_and_emu():
    from stemflow.emu.__main__ import parse_args as emu_args
    from stemflow.sim.__main__ import parse_args as sim_args

    for parse in (emu_args, sim_args):
        assert parse([TABLE1, "--strategy", "direct", "shortest", "--strategy", "multipath"]).strategy == [
            "direct", "shortest", "multipath"]


def test_relay_address_from_the_environment(monkeypatch):
    monkeypatch.setenv("STEMFLOW_RELAY", "127.0.0.1:7101, 127.0.0.1:7102")
    assert client_args(["pub", "news", "hi"]).relay == ["127.0.0.1:7101", "127.0.0.1:7102"]
    assert client_args(["pub", "--relay", "127.0.0.1:9", "news", "hi"]).relay == ["127.0.0.1:9"]


def _run(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stemflow.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.parametrize("command", ["relay", "controller"])
def test_a_port_in_use_is_one_line(command):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        addr = f"127.0.0.1:{held.getsockname()[1]}"
        extra = ["--dc", "a", "--controller", "127.0.0.1:1"] if command == "relay" else []
        r = _run(command, "--listen", addr, *extra)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("the port is in use (another process listens there)")
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_relay_logs_each_failed_try_to_reach_its_controller():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["relay", "--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1"]
    p = subprocess.Popen([sys.executable, "-m", "stemflow.cli", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    tries: list[str] = []
    try:  # read its log until two tries are logged (start-up takes seconds on a loaded machine)
        deadline = time.monotonic() + 20
        while len(tries) < 2 and time.monotonic() < deadline:
            if not select.select([p.stderr], [], [], 0.1)[0]:
                continue
            line = p.stderr.readline()
            if not line:
                break
            if "cannot reach controller 127.0.0.1:1" in line:
                tries.append(line)
    finally:
        p.terminate()
        p.communicate(timeout=10)
    assert len(tries) >= 2 and "retrying" in tries[0]
