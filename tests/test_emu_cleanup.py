"""Nothing of a run remains: after a normal exit, after SIGINT, after SIGKILL + `--cleanup`."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from emu_support import emu_command, needs_emu, root_links
from stemflow.emu.cleanup import REGISTRY_DIR, Registry, netns_inode

pytestmark = [pytest.mark.emu, needs_emu]

SCENARIO = """\
name: cleanup-check
datacenters: [{name: A}, {name: B}, {name: C}]
links:
  - {a: A, b: B, rtt: 10 ms, bandwidth: 20 Mbit/s}
  - {a: B, b: C, rtt: 10 ms, bandwidth: 20 Mbit/s, loss: 0.01}
clients: [{name: ca, datacenter: A}, {name: cc, datacenter: C}]
sessions: [{id: s, publisher: ca, subscribers: [cc], workload: {type: bulk, size: 1 MB}}]
"""
START_TIMEOUT_S = 30


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    p = tmp_path / "cleanup.yaml"
    p.write_text(SCENARIO)
    return p


def start(scenario_file: Path, *extra: str) -> tuple[subprocess.Popen, Registry, dict]:
    """Start a --build-only run; return it, its registry as written, and its host table."""
    proc = subprocess.Popen(emu_command(str(scenario_file), "--build-only", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    if not first.startswith("{"):
        proc.kill()
        pytest.fail(f"the run did not start: {first!r} {proc.communicate()[1]}")
    info = json.loads(first)
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
    registry = Registry.load(Path(info["registry"]))
    assert len(registry.namespaces) == 6  # 3 relays, 2 clients, the controller
    assert sum("delay line" in p.what for p in registry.processes) == 2 + 2 + 1
    return proc, registry, info


def assert_all_gone(registry: Registry, before_links: set[str]) -> None:
    assert registry.leftovers() == []
    assert not registry.path.exists()
    assert not any(name.startswith(f"sf{registry.run_id}") for name in root_links() - before_links)


def test_normal_exit_leaves_nothing(scenario_file):
    links = root_links()
    proc, registry, _ = start(scenario_file, "--hold", "1")
    assert proc.wait(timeout=START_TIMEOUT_S) == 0, proc.stderr.read()
    assert_all_gone(registry, links)


def test_sigint_leaves_nothing(scenario_file):
    links = root_links()
    proc, registry, _ = start(scenario_file)
    assert registry.leftovers() != []  # it is up
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=START_TIMEOUT_S) == 0, proc.stderr.read()
    assert_all_gone(registry, links)


def test_sigterm_leaves_nothing(scenario_file):
    links = root_links()
    proc, registry, _ = start(scenario_file)
    proc.terminate()
    assert proc.wait(timeout=START_TIMEOUT_S) == 0, proc.stderr.read()
    assert_all_gone(registry, links)


def test_sigkill_then_cleanup_leaves_nothing(scenario_file):
    links = root_links()
    proc, registry, info = start(scenario_file)
    # a process the run did not start itself, living in one of its hosts (like a relay's child)
    host_pid = next(p.pid for p in registry.processes if p.what.startswith("host"))
    stray = subprocess.Popen(["nsenter", f"--net=/proc/{host_pid}/ns/net", "--", "sleep", "600"],
                             start_new_session=True)
    target = netns_inode(host_pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _ns_of(stray.pid) != target:
        time.sleep(0.01)
    try:
        proc.kill()
        proc.wait(timeout=START_TIMEOUT_S)
        assert registry.leftovers() != [], "the stray process should keep its namespace alive"
        out = subprocess.run(emu_command("--cleanup"), capture_output=True, text=True,
                             timeout=START_TIMEOUT_S)
        assert out.returncode == 0, out.stderr
        assert f"run {info['run_id']}: removed" in out.stdout
        assert stray.wait(timeout=5) == -signal.SIGTERM
        assert_all_gone(registry, links)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def _ns_of(pid: int) -> int | None:
    try:
        return netns_inode(pid)
    except OSError:
        return None


def test_cleanup_spares_a_live_run(scenario_file):
    proc, registry, _ = start(scenario_file)
    try:
        out = subprocess.run(emu_command("--cleanup"), capture_output=True, text=True,
                             timeout=START_TIMEOUT_S)
        assert registry.run_id not in out.stdout
        assert registry.path.exists() and registry.leftovers() != []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=START_TIMEOUT_S)
    assert registry.leftovers() == []


RUNNING = """\
name: cleanup-while-running
datacenters: [{name: A}, {name: B}]
links: [{a: A, b: B, rtt: 20 ms, bandwidth: 20 Mbit/s}]
clients: [{name: ca, datacenter: A}, {name: cb, datacenter: B}]
sessions: [{id: s, publisher: ca, subscribers: [cb], workload: {type: bulk, size: 200 MB}}]
strategies: [multipath]
"""


def start_running(tmp_path: Path) -> tuple[subprocess.Popen, Registry]:
    """A real run (controller, relays, clients), caught while its bulk transfer is under way."""
    (tmp_path / "r.yaml").write_text(RUNNING)
    run_id = secrets.token_hex(2)
    proc = subprocess.Popen(emu_command(str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"),
                                        "--run-id", run_id),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    path = REGISTRY_DIR / f"{run_id}.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            reg = Registry.load(path)
            if any(p.what.startswith("publisher") for p in reg.processes):
                time.sleep(1.0)  # the transfer is under way
                return proc, Registry.load(path)
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the run did not reach its workload: {proc.communicate()[1][-2000:]}")


def test_sigint_during_a_run_stops_relays_controller_and_clients(tmp_path):
    proc, registry = start_running(tmp_path)
    whats = {p.what.split()[0] for p in registry.processes}
    assert {"controller", "relay", "subscriber", "publisher"} <= whats
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=START_TIMEOUT_S)
    assert registry.leftovers() == []
    assert not registry.path.exists()


def test_sigkill_during_a_run_then_cleanup(tmp_path):
    proc, registry = start_running(tmp_path)
    proc.kill()
    proc.wait(timeout=START_TIMEOUT_S)
    # relays and clients run in sessions of their own: they outlive the orchestrator
    assert any("relay" in x or "controller" in x for x in registry.leftovers())
    out = subprocess.run(emu_command("--cleanup"), capture_output=True, text=True,
                         timeout=START_TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    assert registry.leftovers() == []
    assert not registry.path.exists()
