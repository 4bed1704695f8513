"""Added latency per relay hop alone, relays of two source trees (or with extra flags) interleaved.

The data-plane benchmark (`dataplane.py`) measures latency after its throughput rows, and on a
shared 2-core machine its per-hop rows vary by 2x between runs. This runs only the latency row
(a 128-byte message every 2 ms, 1000 messages, publisher at relay a, subscriber at relay b,
clients of this tree for every variant, so only the relays differ), many times, the variants
back to back in each repetition, and prints the median and range of each variant's per-hop p50
and p99 (one-way latency minus a direct TCP connection's, over two relays).

    python benchmarks/hop_latency.py --baseline TREE [--reps 6] [--relay-args=--no-acks]

Variants: this tree's relays; with `--relay-args` also this tree's relays started with those
flags; with `--baseline` the relays of TREE (e.g. a git worktree of an older commit).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dataplane as dp


def relays(procs: dp.Procs, tmp: Path, tree: Path, extra: list[str]) -> tuple[dict[str, str], str]:
    """Controller and relays a, b of `tree` (their --loop the default); their addresses, status URL."""
    procs.tree = tree
    scenario = tmp / "bench.yaml"
    scenario.write_text("name: dataplane\ndatacenters: [{name: a}, {name: b}]\nlinks:\n"
                        "  - {a: a, b: b, rtt_ms: 1, bandwidth_mbps: 100000}\nclients: []\nsessions: []\n")
    ctl = procs.start("controller", [dp.PY, "-m", "stemflow.cli", "controller", "--listen", "127.0.0.1:0",
                                     "--status", "127.0.0.1:0", "--strategy", "shortest", "--scenario",
                                     str(scenario), "--log-level", "WARNING"])
    port = dp.read_line(ctl, "controller listening").rsplit(":", 1)[1]
    status = dp.read_line(ctl, "controller status").split()[-1]
    addr = {}
    for dc in ("a", "b"):
        p = procs.start(f"relay-{dc}", [dp.PY, "-m", "stemflow.cli", "relay", "--dc", dc, "--listen",
                                        "127.0.0.1:0", "--controller", f"127.0.0.1:{port}", "--parallel",
                                        "4", "--log-level", "WARNING", *extra])
        addr[dc] = dp.read_line(p, f"relay {dc} listening").split()[-1]
    time.sleep(1.5)  # registered, peers connected
    procs.tree = dp.ROOT  # the clients are this tree's
    return addr, status


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--baseline", type=Path, metavar="TREE", help="also the relays of this source tree")
    p.add_argument("--relay-args", default="", help="also this tree's relays with these flags")
    a = p.parse_args(argv)
    if a.baseline is not None and not (a.baseline / "stemflow" / "relay").is_dir():
        p.error(f"--baseline {a.baseline}: not a Stemflow source tree (no stemflow/relay/)")
    variants = [("this tree", dp.ROOT, [])]
    if a.relay_args:
        variants.append((f"this tree {a.relay_args}", dp.ROOT, shlex.split(a.relay_args)))
    if a.baseline is not None:
        variants.append((f"relays of {a.baseline}", a.baseline.resolve(), []))
    got: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in variants}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hop-latency-") as t:
        procs = dp.Procs(Path(t), "uvloop")
        try:
            direct = dp.direct_latency(procs, 3)
            for i in range(a.reps):
                for name, tree, extra in variants:
                    addr, status = relays(procs, Path(t), tree, extra)
                    p50, p99 = dp.latency(procs, "stemflow", addr["a"], addr["b"], status)
                    got[name].append(((p50 - direct[0]) / 2, (p99 - direct[1]) / 2))
                    hop50, hop99 = got[name][-1]
                    print(f"rep {i + 1} {name}: hop p50 {hop50:.1f} µs, p99 {hop99:.1f} µs", flush=True)
                    procs.close()
                    procs.procs.clear()
        finally:
            procs.close()
    print(f"\nload average {load:.1f} before, {os.getloadavg()[0]:.1f} after; direct TCP p50 "
          f"{direct[0]:.0f} µs, p99 {direct[1]:.0f} µs; {a.reps} repetitions, variants interleaved")
    for name, xs in got.items():
        p50s, p99s = [x for x, _ in xs], [y for _, y in xs]
        print(f"{name}: hop p50 {statistics.median(p50s):.1f} µs ({min(p50s):.0f}–{max(p50s):.0f}), "
              f"p99 {statistics.median(p99s):.1f} µs ({min(p99s):.0f}–{max(p99s):.0f})")
    return 0


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main(sys.argv[1:]))
