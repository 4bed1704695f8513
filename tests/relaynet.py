"""Real controller and relay processes on loopback for the relay tests, killed by PID at the end.

`Overlay` starts a controller (ephemeral port, JSON status endpoint) with a scenario whose
datacenters form a full mesh, then one process per relay; it knows each process's address from
the line the process prints when it listens.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from itertools import combinations
from pathlib import Path

import pytest

from stemflow.eventloop import DEFAULT_LOOP

PYTHON = sys.executable
STRATEGIES = "tests.relay_strategies"
ROOT = Path(__file__).resolve().parent.parent
RELAY_LOOPS = [pytest.param("uvloop", marks=pytest.mark.skipif(
                   importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")),
               "asyncio"]
"""Event loops the relays and controller of a parametrized test run on (`--loop`)."""


def wait_line(proc: subprocess.Popen, prefix: str, timeout_s: float = 10.0) -> str:
    """The first stdout line starting with `prefix` (the process prints it when ready)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r:
            line = proc.stdout.readline().decode()
            if line.startswith(prefix):
                return line.strip()
            if not line and proc.poll() is not None:
                break
    raise RuntimeError(f"process {proc.args} did not print {prefix!r} (exit {proc.poll()})")


def scenario_yaml(dcs: list[str]) -> str:
    lines = ["name: relay-test", "datacenters:"] + [f"  - {{name: {d}}}" for d in dcs]
    lines += ["links:"] + [f"  - {{a: {a}, b: {b}, rtt_ms: 1, bandwidth_mbps: 10000}}"
                           for a, b in combinations(dcs, 2)]
    return "\n".join(lines + ["clients: []", "sessions: []", ""])


class Overlay:
    def __init__(self, tmp: Path, dcs: list[str], strategy: str, parallel: int = 4,
                 interval_s: float = 0.5, grace_s: float = 0.3, builtin: bool = False,
                 loop: str = DEFAULT_LOOP, relay_args: tuple[str, ...] = ()):
        self.tmp, self.dcs, self.parallel, self.interval_s = tmp, dcs, parallel, interval_s
        self.loop = loop
        self.relay_args = list(relay_args)
        self.procs: dict[str, subprocess.Popen] = {}
        self.addr: dict[str, str] = {}
        (tmp / "scenario.yaml").write_text(scenario_yaml(dcs))
        self.strategy = strategy if builtin or ":" in strategy else f"{STRATEGIES}:{strategy}"
        self.grace_s = grace_s
        self.controller_port = 0
        try:
            self.start_controller()
            for dc in dcs:
                self.start_relay(dc)
            self.wait_connected(dcs)
        except BaseException:  # the test never gets the object to close: stop what started
            self.close()
            raise

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([PYTHON, "-m", "stemflow.cli", *args], stdout=subprocess.PIPE,
                                stderr=log, cwd=ROOT, env=env, bufsize=0)
        self.procs[name] = proc
        return proc

    def start_controller(self) -> None:
        p = self._spawn("controller", [
            "controller", "--listen", f"127.0.0.1:{self.controller_port}", "--status", "127.0.0.1:0",
            "--strategy", self.strategy, "--scenario", str(self.tmp / "scenario.yaml"),
            "--startup-grace", str(self.grace_s), "--loop", self.loop])
        self.controller_port = int(wait_line(p, "controller listening").rsplit(":", 1)[1])
        self.status_url = wait_line(p, "controller status").split()[-1]

    def start_relay(self, dc: str) -> None:
        p = self._spawn(dc, ["relay", "--dc", dc, "--listen", "127.0.0.1:0", "--controller",
                             f"127.0.0.1:{self.controller_port}", "--parallel", str(self.parallel),
                             "--interval", str(self.interval_s), "--loop", self.loop,
                             *self.relay_args])
        self.addr[dc] = wait_line(p, f"relay {dc} listening").split()[-1]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            proc.wait(5)

    def relay_state(self, dc: str, timeout_s: float = 5.0) -> dict:
        """What relay `dc` says of itself on SIGUSR1 (`Relay.state`: table version, routes, held
        frames, counters), read back from its log: it answers with no controller to ask."""
        log, marker = self.tmp / f"{dc}.log", f"relay {dc}: state "
        seen = log.read_text().count(marker)
        os.kill(self.procs[dc].pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = [x for x in log.read_text().splitlines() if marker in x]
            if len(lines) > seen:
                with contextlib.suppress(ValueError):  # the line may be half written yet
                    return json.loads(lines[seen].split(marker, 1)[1])
            time.sleep(0.05)
        raise TimeoutError(f"relay {dc} logged no state within {timeout_s} s")

    def status(self) -> dict:
        with urllib.request.urlopen(self.status_url, timeout=5) as r:
            return json.load(r)

    def wait_connected(self, dcs: list[str], timeout_s: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status()
            if set(dcs) <= set(st["connected"]):
                return st
            time.sleep(0.05)
        raise TimeoutError(f"relays {dcs} did not all register; status: {st['connected']}")

    def wait_status(self, pred, timeout_s: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.05)
        raise TimeoutError(f"status never satisfied the condition: {json.dumps(st)[:2000]}")

    def wait_session(self, topic: str, sinks: int = 1, timeout_s: float = 10.0) -> dict:
        """Until the controller has planned `topic` with `sinks` sink relays (and pushed it)."""
        st = self.wait_status(lambda s: any(x["topic"] == topic and len(x["sinks"]) == sinks
                                            and x["rate_mbps"] for x in s["sessions"]), timeout_s)
        time.sleep(0.1)  # the push follows the plan by a loopback round trip
        return st

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.tmp.glob("*.log"))
