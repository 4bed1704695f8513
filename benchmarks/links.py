"""Emulated links: CPU per link and accuracy of rate and RTT, per backend mode and rate.

Builds two hosts joined by one user-space link (`stemflow.emu`), runs one cubic TCP flow across
it for a few seconds at several link rates, and reports the delay line's CPU (share of one core,
from /proc/PID/stat), the flow's on-wire rate against the configured one, and the ping RTT. Two
modes: GSO pass-through (loss 0) and per-packet (any loss > 0; a loss of 1e-7 is used so that the
mode switches without losing packets in a run this short). Writes the section "## Emulated links"
of docs/benchmarks.md (run as root: `sudo .venv/bin/python benchmarks/links.py`).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import time
from pathlib import Path

from docpage import write_section
from stemflow.emu import measure
from stemflow.emu.cleanup import Registry, Teardown
from stemflow.emu.links import link_class
from stemflow.emu.topology import Emulation, plan_topology

from stemflow.scenario import parse_scenario

SECTION = "## Emulated links"
RTT_MS = 40.0
FLOW_S = 5.0
PER_PACKET_LOSS = 1e-7
"""Small enough that a 5 s run almost surely loses nothing, yet > 0: per-packet mode."""
TCP_EFFICIENCY = 1448 / 1500
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def scenario(rate_mbps: float, loss: float):
    return parse_scenario({
        "name": "bench-link", "datacenters": [{"name": "A"}, {"name": "B"}],
        "links": [{"a": "A", "b": "B", "rtt_ms": RTT_MS, "bandwidth_mbps": rate_mbps,
                   "loss": loss}],
        "clients": [{"name": "ca", "datacenter": "A"}, {"name": "cb", "datacenter": "B"}],
        "sessions": [{"id": "s", "publisher": "ca", "subscribers": ["cb"],
                      "workload": {"type": "bulk", "size": "1 MB"}}]})


def measure_one(rate_mbps: float, loss: float) -> dict[str, float]:
    run_id = secrets.token_hex(2)
    registry = Registry.create(run_id)
    with Teardown(registry), Emulation(plan_topology(scenario(rate_mbps, loss), 1.0, run_id),
                                       link_class("userspace"), registry) as emu:
        idle = measure.ping(emu, "A", "B", count=20, interval_s=0.05)
        link = emu.link_between("A", "B")
        c0, t0 = cpu_s(link.process.pid), time.monotonic()
        flow = measure.tcp_transfer(emu, "A", "B", seconds=FLOW_S, cc="cubic")
        cpu = (cpu_s(link.process.pid) - c0) / (time.monotonic() - t0)
    if link.stats.get("gso") != (loss == 0):
        raise RuntimeError(f"delay line ran in the wrong mode: {link.stats}")
    return {"rate": rate_mbps, "wire_mbps": flow.throughput_mbps / TCP_EFFICIENCY,
            "goodput_mbps": flow.throughput_mbps, "cpu": cpu, "rtt_ms": idle.avg_ms}


def run(rates: list[float], reps: int) -> list[tuple[str, dict[str, float]]]:
    rows = []
    for mode, loss in (("GSO pass-through", 0.0), ("per-packet", PER_PACKET_LOSS)):
        for rate in rates:
            samples = [measure_one(rate, loss) for _ in range(reps)]
            med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            rows.append((mode, med))
            print(mode, {k: round(v, 3) for k, v in med.items()}, flush=True)
    return rows


def section(rows: list[tuple[str, dict[str, float]]], reps: int) -> str:
    lines = [
        SECTION, "",
        f"`benchmarks/links.py`, {time.strftime('%Y-%m-%d')}, {platform.node()} "
        f"({os.cpu_count()} cores, kernel {platform.release()}, no sch_netem): one user-space link "
        f"(`stemflow.emu.delayline`), RTT {RTT_MS:g} ms, one cubic flow for {FLOW_S:g} s; "
        f"median of {reps}. CPU is the delay line's share of one core during the flow; on-wire "
        "rate = goodput / (1448/1500). Idle RTT by ping before the flow.", "",
        "| mode | link (Mbit/s) | goodput (Mbit/s) | on-wire / link | delay line CPU | "
        "ping RTT (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, r in rows:
        lines.append(f"| {mode} | {r['rate']:g} | {r['goodput_mbps']:.1f} | "
                     f"{r['wire_mbps'] / r['rate']:.3f} | {r['cpu'] * 100:.0f}% | "
                     f"{r['rtt_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0, 500.0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    text = section(run(a.rates, a.reps), a.reps)
    print(text)
    if not a.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
