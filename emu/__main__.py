"""`python -m stemflow.emu`: emulate a scenario, or stand its network up, or clean up a crash.

Owns the command line of the emulator and the order of a run: check prerequisites, open the run
registry, build the topology, (run the workload), tear everything down. Topology, links and
teardown are the other modules' (`topology`, `links`, `cleanup`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stemflow.emu import cleanup, prereq

from stemflow.cli_args import ArgumentParser, add_version
from stemflow.scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:  # imported lazily below: Mininet is only needed once a network is built
    from stemflow.emu.topology import Emulation

RUN_ID_BYTES = 2
"""Four hex digits: host names sf<id>r<i> stay short enough for interface names (15 bytes)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = ArgumentParser(prog="stemflow emu",
                                 description="Emulate a scenario in Mininet hosts (needs root).")
    add_version(ap)
    ap.add_argument("scenario", nargs="?", help="scenario YAML file, or the name of a shipped one")
    ap.add_argument("--out", default=None, help="results directory (default: results/<scenario name>/emu)")
    ap.add_argument("--strategy", action="extend", nargs="+", default=None, metavar="NAME",
                    help="strategies to run, as in `stemflow sim` (several names, or the flag "
                         "repeated; default: the scenario's list)")
    ap.add_argument("--rate-scale", type=float, default=1.0, metavar="F",
                    help="multiply every bandwidth and TCP window cap by this factor (default: %(default)s)")
    ap.add_argument("--link-backend", choices=("auto", "netem", "userspace"), default="auto",
                    help="auto (default): netem where the kernel has it, else the user-space delay line")
    ap.add_argument("--size-scale", type=float, default=1.0, metavar="F",
                    help="multiply bulk transfer sizes (recorded; throughput is size/time; "
                         "default: %(default)s)")
    ap.add_argument("--serial", action="store_true",
                    help="run the sessions one at a time instead of together (at their start_s)")
    ap.add_argument("--cleanup", action="store_true",
                    help="remove what crashed runs left (processes, namespaces, links) and exit")
    ap.add_argument("--build-only", action="store_true",
                    help="build the network, print READY and the hosts, hold until Ctrl-C")
    ap.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                    help="with --build-only: tear down after this many seconds (default: hold until Ctrl-C)")
    ap.add_argument("--run-id", default=None, help="hex id for names (default: random)")
    a = ap.parse_args(argv)
    if not a.cleanup and not a.scenario:
        ap.error("give a scenario file (or --cleanup)")
    if a.run_id is not None and not re.fullmatch(r"[0-9a-f]{1,4}", a.run_id):
        ap.error(f"--run-id must be 1 to 4 hex digits (it prefixes interface names), "
                 f"found {a.run_id!r}")
    if not (0 < a.rate_scale < math.inf and 0 < a.size_scale < math.inf):
        ap.error(f"--rate-scale and --size-scale must be > 0, found {a.rate_scale}, "
                 f"{a.size_scale}")
    return a


def run_cleanup() -> int:
    handled = cleanup.cleanup_stale()
    if not handled:
        print("stemflow.emu: nothing to clean up")
    status = 0
    for run_id, left in handled:
        if left:
            status = 1
            print(f"run {run_id}: could not remove: {', '.join(left)}", file=sys.stderr)
        else:
            print(f"run {run_id}: removed")
    return status


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        prereq.require()
    except prereq.PrerequisiteError as e:
        print(f"stemflow.emu: {e}", file=sys.stderr)
        return 2
    if a.cleanup:
        return run_cleanup()
    try:
        scenario = load_scenario(a.scenario)
    except ScenarioError as e:
        print(f"stemflow.emu: {e}", file=sys.stderr)
        return 2
    from stemflow.emu.faults import unplayable
    from stemflow.emu.links import LinkBackendError, link_class
    from stemflow.emu.measure import MeasureError
    from stemflow.emu.run import RunError
    from stemflow.emu.topology import Emulation, TopologyError, plan_topology

    try:
        link_cls = link_class(a.link_backend)
    except LinkBackendError as e:
        print(f"stemflow.emu: {e}", file=sys.stderr)
        return 2
    if bad := unplayable(scenario, link_cls):  # never run a scenario without the faults it asks for
        print(f"stemflow.emu: {scenario.source}: {bad}", file=sys.stderr)
        return 2
    run_id = a.run_id or secrets.token_hex(RUN_ID_BYTES)
    out = Path(a.out or f"results/{scenario.name}/emu")
    summary: dict | None = None
    plan = plan_topology(scenario, a.rate_scale, run_id)
    registry = cleanup.Registry.create(run_id)
    failed = False
    with cleanup.Teardown(registry) as td:
        try:
            with Emulation(plan, link_cls, registry) as emu:
                if a.build_only:
                    hold(emu, a.hold, registry)
                else:
                    summary = run(emu, scenario, a, out)
        except KeyboardInterrupt:
            print("stemflow.emu: interrupted; tearing down", file=sys.stderr)
        except (TopologyError, LinkBackendError, RunError, MeasureError) as e:
            print(f"stemflow.emu: {e}; tearing down", file=sys.stderr)
            failed = True
    if td.remaining:
        print(f"stemflow.emu: could not remove: {', '.join(td.remaining)}", file=sys.stderr)
        return 1
    if summary is None:
        return 0 if a.build_only and not failed else 1
    from stemflow.emu.run import check_delivery

    bad = check_delivery(summary)
    for line in bad:
        print(f"stemflow.emu: delivery problem: {line}", file=sys.stderr)
    return 1 if bad else 0


def run(emu: Emulation, scenario: Scenario, a: argparse.Namespace, out: Path) -> dict:
    from stemflow.emu.report import print_summary
    from stemflow.emu.run import Options, run_scenario

    opts = Options(out=out, strategies=a.strategy or list(scenario.strategies),
                   rate_scale=a.rate_scale, size_scale=a.size_scale, serial=a.serial,
                   link_backend=emu.link_cls.backend)
    manifest = run_scenario(emu, scenario, opts)
    print_summary(out, manifest)
    return manifest


def hold(emu: Emulation, seconds: float | None, registry: cleanup.Registry) -> None:
    """Keep the network up (for a person, or a test) until `seconds` pass or a signal arrives."""
    hosts = {h.label: {"name": h.name, "address": h.address, "role": h.role}
             for h in emu.plan.hosts}
    print(json.dumps({"run_id": registry.run_id, "registry": str(registry.path),
                      "link_backend": emu.link_cls.backend,
                      "hosts": hosts}), flush=True)
    print("READY", flush=True)
    deadline = None if seconds is None else time.monotonic() + seconds
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
