"""Shared helpers of the emulation tests: the skip rule, small scenarios, a running emulation."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from stemflow.emu import prereq

from stemflow.scenario import Scenario, parse_scenario


def skip_reason() -> str | None:
    """Why the emulation tests cannot run here, or None."""
    found = prereq.problems(need_ping=True)
    return "; ".join(p.what for p in found) if found else None


needs_emu = pytest.mark.skipif(skip_reason() is not None, reason=f"emulation: {skip_reason()}")


def two_dc(rate_mbps: float = 50.0, rtt_ms: float = 40.0, loss: float = 0.0,
           rwnd_bytes: float = 64 * 2**20) -> Scenario:
    """Two datacenters joined by one link, one client at each; TCP windows capped at `rwnd`."""
    return parse_scenario({
        "tcp": {"rwnd_bytes": rwnd_bytes},
        "name": "two-dc",
        "datacenters": [{"name": "A"}, {"name": "B"}],
        "links": [{"a": "A", "b": "B", "rtt_ms": rtt_ms, "bandwidth_mbps": rate_mbps,
                   "loss": loss}],
        "clients": [{"name": "ca", "datacenter": "A"}, {"name": "cb", "datacenter": "B"}],
        "sessions": [{"id": "s", "publisher": "ca", "subscribers": ["cb"],
                      "workload": {"type": "bulk", "size": "1 MB"}}],
    })


@contextmanager
def emulation(scenario: Scenario, backend: str = "userspace",
              rate_scale: float = 1.0) -> Iterator[Any]:
    from stemflow.emu.cleanup import Registry, Teardown
    from stemflow.emu.links import link_class
    from stemflow.emu.topology import Emulation, plan_topology

    run_id = secrets.token_hex(2)
    registry = Registry.create(run_id)
    plan = plan_topology(scenario, rate_scale, run_id)
    with Teardown(registry) as td, Emulation(plan, link_class(backend), registry) as emu:
        yield emu
    assert td.remaining == [], f"teardown left {td.remaining}"
    assert registry.leftovers() == []


def emu_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "stemflow.emu", *args]


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def have(tool: str) -> bool:
    return shutil.which(tool) is not None and os.geteuid() == 0
