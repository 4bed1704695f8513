"""Exactly once under seeded random faults, more seeds and longer than CI (`tests/faultcheck.py`).

Each seed is one run on loopback: four relays, three publishers, five subscribers, `--faults`
faults (transit relays killed -9 and restarted, publisher and subscriber connections cut) over
`--duration` seconds; the checker asks that every acknowledged message reached every subscriber
exactly once in its publisher's order. Prints one line per seed and, with --write, the section
"## Exactly once under random faults" of docs/benchmarks.md.

Usage: python benchmarks/exactly_once.py [--seeds 5] [--faults 20] [--duration 60] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback process helpers the tests use
sys.path.insert(0, str(Path(__file__).parent))

from docpage import write_section  # noqa: E402
from faultcheck import run  # noqa: E402

TITLE = "## Exactly once under random faults"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default: %(default)s)")
    p.add_argument("--faults", type=int, default=20, help="faults per run (default: %(default)s)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per run (default: %(default)s)")
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.faults < 1 or args.duration < 3:
        p.error("--seeds and --faults must be at least 1, --duration at least 3 s")
    rows = []
    for seed in range(1, args.seeds + 1):
        with tempfile.TemporaryDirectory(prefix="exactly-once-") as t:
            out = run(Path(t), seed, args.faults, args.duration)
        kinds = Counter(f.kind for f in out.faults)
        messages = sum(out.sent.values())
        failed = [x for x in out.problems if not x.startswith("---")]
        rows.append((seed, dict(kinds), messages, failed, out.resume_gaps))
        print(f"seed {seed}: {dict(kinds)}, {messages} messages x {len(out.received)} subscribers, "
              f"{'OK' if not failed else 'FAILED: ' + '; '.join(failed[:3])}", flush=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [TITLE, "",
             f"`benchmarks/exactly_once.py --seeds {args.seeds} --faults {args.faults} --duration "
             f"{args.duration:g}`, {date}, {platform.node()} ({os.cpu_count()} cores, shared), commit "
             f"{commit}. Loopback, relays a, b (publishers and subscribers, each client through its own "
             "TCP proxy) and m1, m2 (transit); faults drawn from the seed: kill -9 of a transit relay, "
             "its restart, a publisher's or a subscriber's connection cut. Checked: every message "
             "(all acknowledged, the publishers flush) at every subscriber exactly once, in its "
             "publisher's order.", "",
             "| seed | faults | messages published | result |", "|---:|---|---:|---|"]
    for seed, kinds, messages, failed, gaps in rows:
        result = "exactly once, in order" if not failed and not gaps else (
            f"**{len(failed)} subscriber/publisher pairs wrong**" if failed else f"{gaps} resume gaps")
        lines.append(f"| {seed} | {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))} | "
                     f"{messages:,} | {result} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write:
        write_section(TITLE, section)
    return 0 if all(not r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
