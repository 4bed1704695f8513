"""A soak of reliable streams with a fault every minute: does relay memory stay put? (issue 15)

Loopback, real processes (`tests/relaynet.py`'s `Overlay`): relays a and b, where the clients
are, and transit relays m1 and m2 (reliable sessions go a -> m1 -> b and b -> m1 -> a while m1
lives, else through m2, else direct); the three publishers and five subscribers of
`tests/faultcheck.py`, each client through its own TCP proxy (`faultcheck.Proxy`), publishing
numbered messages on one reliable topic with history. Every minute one fault drawn from the
seed: kill -9 of a transit relay and its restart `RESTART_AFTER_S` later, or a publisher's or a
subscriber's connection cut. Every relay's resident memory (VmRSS of /proc/PID/status) is read
at the start and after each minute; the verdict compares the last reading with the one after
the first minute on a and b, the relays that live the whole run (a restarted transit relay
starts afresh). At the end, the exactly-once check: every message of every publisher at every
subscriber once, in its publisher's order (checked as the messages come, so the run holds
counters, not messages).

Prints a progress line per minute; with --write, the section "## Soak: relay memory under
faults" of docs/benchmarks.md, the readings in benchmarks/results/soak.csv and the figure
docs/figures/soak-rss.{png,pdf,svg}.

Usage: python benchmarks/soak.py [--minutes 30] [--seed 1] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback process helpers the tests use
sys.path.insert(0, str(Path(__file__).parent))

from docpage import write_section  # noqa: E402
from faultcheck import EVERY_S, PUBLISHERS, SUBSCRIBERS, TOPIC, clients  # noqa: E402
from relaynet import Overlay  # noqa: E402

TITLE = "## Soak: relay memory under faults"
RELAYS = ("a", "b", "m1", "m2")
LONG_LIVED = ("a", "b")
"""The relays never killed: their memory is the verdict (m1 and m2 restart with a fresh heap)."""
MINUTE_S = 60.0
RESTART_AFTER_S = 10.0
"""A killed transit relay comes back this late: long enough for the controller to declare it
dead and re-plan around it, and well inside the minute, before the next reading."""
RSS_BOUND = 0.10
"""The issue's bound: relay RSS at the end within 10% of where it was after the first minute."""
HISTORY_COUNT = 10_000
"""The topic's history at each relay (what a reconnecting subscriber resumes from): full after
the first half minute at this rate, so the first minute's reading already includes it."""
CSV_PATH = ROOT / "benchmarks" / "results" / "soak.csv"
FIGURES = ROOT / "docs" / "figures"


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # "kill" (and restart), "cut-publisher", "cut-subscriber"
    target: str


def schedule(seed: int, minutes: int) -> list[Fault]:
    """One fault per minute at a seeded second of it, early enough that a killed relay is back
    before the minute's reading."""
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        kind = rng.choice(["kill", "cut-publisher", "cut-subscriber"])
        target = (rng.choice(["m1", "m2"]) if kind == "kill" else
                  rng.choice(PUBLISHERS if kind == "cut-publisher" else SUBSCRIBERS)[0])
        out.append(Fault(round(m * MINUTE_S + rng.uniform(5.0, MINUTE_S - RESTART_AFTER_S - 10.0), 1),
                         kind, target))
    return out


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from the kernel's own accounting."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


@dataclass
class Order:
    """One subscriber's view of one publisher: the next counter due, and what deviated."""

    next: int = 0
    duplicates: int = 0
    gaps: int = 0
    missed: int = 0

    def saw(self, v: int) -> None:
        if v == self.next:
            self.next += 1
        elif v < self.next:
            self.duplicates += 1
        else:
            self.gaps += 1
            self.missed += v - self.next
            self.next = v + 1


@dataclass
class Reading:
    minute: int
    t_s: float
    rss_kib: dict[str, int]
    pids: dict[str, int]
    state: dict[str, dict] = field(default_factory=dict)
    """What a and b say of themselves (`Relay.state`): entries of their tables, objects the
    garbage collector tracks, and with --tracemalloc the largest allocations."""


@dataclass
class Outcome:
    faults: list[Fault]
    readings: list[Reading]
    sent: dict[str, int]
    duration_s: float
    problems: list[str] = field(default_factory=list)


def check(sent: dict[str, int], orders: dict[str, dict[str, Order]]) -> list[str]:
    problems = []
    for sub, per_pub in orders.items():
        for pub, n in sent.items():
            o = per_pub.get(pub, Order())
            if (o.next, o.duplicates, o.gaps) != (n, 0, 0):
                problems.append(f"{sub} from {pub}: next {o.next} of {n}, {o.duplicates} duplicates, "
                                f"{o.gaps} gaps ({o.missed} skipped)")
    return problems


def read(o: Overlay, minute: int, t_s: float) -> Reading:
    pids = {dc: o.procs[dc].pid for dc in (*RELAYS, "controller")}
    r = Reading(minute, t_s, {n: rss_kib(p) for n, p in pids.items()}, pids)
    r.state = {dc: o.relay_state(dc) for dc in LONG_LIVED}
    return r


def grown(first: Reading, last: Reading, dc: str) -> str:
    """The tables of `dc` that hold more entries than after the first minute, and its objects."""
    a, b = first.state[dc], last.state[dc]
    more = [f"{k} {a['sizes'].get(k, 0)}->{v}" for k, v in b["sizes"].items()
            if v > a["sizes"].get(k, 0) and k != "history_bytes"]
    return f"objects {b['gc_objects'] / a['gc_objects'] - 1:+.1%}" + (f", {', '.join(more)}" if more else "")


def progress(r: Reading, minutes: int, sent: dict[str, int], faults: list[Fault],
             orders: dict[str, dict[str, Order]]) -> str:
    now = [f for f in faults if (r.minute - 1) * MINUTE_S <= f.at_s < r.minute * MINUTE_S]
    fault = f"{now[0].kind} {now[0].target} at {now[0].at_s:.0f} s" if now else "none"
    off = sum(o.duplicates + o.gaps for per in orders.values() for o in per.values())
    rss = " ".join(f"{dc} {r.rss_kib[dc] / 1024:.1f}" for dc in (*RELAYS, "controller"))
    objects = " ".join(f"{dc} {r.state[dc]['gc_objects']:,}" for dc in LONG_LIVED)
    return (f"minute {r.minute}/{minutes}: fault {fault}; RSS MiB {rss}; objects {objects}; "
            f"{sum(sent.values()):,} published; {off} out of order so far")


async def _soak(o: Overlay, plan: list[Fault], minutes: int) -> Outcome:
    loop = asyncio.get_running_loop()
    proxies, subs, pubs, streams = await clients(o)
    orders: dict[str, dict[str, Order]] = {name: {} for name, _ in SUBSCRIBERS}

    async def receive(name: str, sub) -> None:
        per = orders[name]
        async for m in sub:
            pub = f"p{m.data[0]}"
            order = per.get(pub)
            if order is None:
                order = per[pub] = Order()
            order.saw(int.from_bytes(m.data[1:5], "big"))

    rx = [asyncio.create_task(receive(n, s)) for n, (_, s) in subs.items()]
    sent = dict.fromkeys(pubs, 0)
    duration_s = minutes * MINUTE_S
    t0 = time.monotonic()

    async def publish(name: str) -> None:
        index = int(name[1:])
        while time.monotonic() - t0 < duration_s:
            await streams[name].write(bytes([index]) + sent[name].to_bytes(4, "big") + bytes(100))
            sent[name] += 1
            await asyncio.sleep(EVERY_S)

    def restart(dc: str) -> None:
        old = o.procs[dc]
        if old.stdout is not None:
            old.stdout.close()
        o.start_relay(dc)

    async def inject() -> None:
        for f in plan:
            await asyncio.sleep(max(0.0, t0 + f.at_s - time.monotonic()))
            if f.kind == "kill":
                await loop.run_in_executor(None, o.kill, f.target)
                await asyncio.sleep(RESTART_AFTER_S)
                await loop.run_in_executor(None, restart, f.target)
            else:
                proxies[f.target].drop()

    readings = [await asyncio.to_thread(read, o, 0, 0.0)]

    async def measure() -> None:
        for minute in range(1, minutes + 1):
            await asyncio.sleep(max(0.0, t0 + minute * MINUTE_S - time.monotonic()))
            r = await asyncio.to_thread(read, o, minute, time.monotonic() - t0)
            readings.append(r)
            print(progress(r, minutes, sent, plan, orders), flush=True)

    await asyncio.gather(inject(), measure(), *(publish(n) for n in pubs))
    elapsed_s = time.monotonic() - t0
    for c in pubs.values():
        await asyncio.wait_for(c.flush(), 30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and check(sent, orders):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # duplicates, if any, would come now
    for t in rx:
        t.cancel()
    out = Outcome(plan, readings, dict(sent), elapsed_s, check(sent, orders))
    gaps = sum(c.resume_gaps for c, _ in subs.values())
    if gaps:
        out.problems.append(f"{gaps} resumes found history shorter than the gap")
    for c in [*pubs.values(), *(c for c, _ in subs.values())]:
        await c.close()
    for p in proxies.values():
        p.close()
    return out


def soak(tmp: Path, seed: int, minutes: int) -> Outcome:
    """One run; the relays and the controller are killed by PID whatever happens."""
    plan = schedule(seed, minutes)
    o = Overlay(tmp, list(RELAYS), "via_middle", relay_args=("--history", f"{TOPIC}={HISTORY_COUNT}"))
    try:
        out = asyncio.run(_soak(o, plan, minutes))
        if out.problems:
            print(o.logs(), file=sys.stderr)
        return out
    finally:
        o.close()


def growth(readings: list[Reading], dc: str) -> float:
    """Last reading against the one after the first minute."""
    return readings[-1].rss_kib[dc] / readings[1].rss_kib[dc] - 1.0


def restarts(readings: list[Reading], dc: str) -> list[int]:
    """Minutes at whose reading `dc` was a new process."""
    return [b.minute for a, b in zip(readings, readings[1:], strict=False) if a.pids[dc] != b.pids[dc]]


def write_csv(out: Outcome, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minute", "t_s", "process", "pid", "rss_kib"])
        for r in out.readings:
            for name, kib in r.rss_kib.items():
                w.writerow([r.minute, f"{r.t_s:.1f}", name, r.pids[name], kib])


def read_csv(path: Path) -> list[Reading]:
    """The readings `write_csv` wrote (RSS and PIDs; not the relays' own state)."""
    by_minute: dict[int, Reading] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            minute = int(row["minute"])
            r = by_minute.setdefault(minute, Reading(minute, float(row["t_s"]), {}, {}))
            r.rss_kib[row["process"]] = int(row["rss_kib"])
            r.pids[row["process"]] = int(row["pid"])
    return [by_minute[m] for m in sorted(by_minute)]


def figure(out: Outcome, out_dir: Path = FIGURES) -> list[Path]:
    """RSS of every relay per minute, the 10% band around a's and b's first-minute reading,
    and the faults as ticks along the top."""
    from stemflow.figure_style import COLUMN_IN, save
    from stemflow.figure_style import figure as new_figure

    fig = new_figure(COLUMN_IN, 2.8)
    ax = fig.subplots()
    minutes = [r.minute for r in out.readings]
    for dc, style in zip(RELAYS, ("-", "-", "--", ":"), strict=True):
        ax.plot(minutes, [r.rss_kib[dc] / 1024 for r in out.readings], style, marker=".", ms=3,
                lw=1, label=dc + ("" if dc in LONG_LIVED else " (restarted)"))
    for i, (dc, color) in enumerate(zip(LONG_LIVED, ("C0", "C1"), strict=True)):
        base = out.readings[1].rss_kib[dc] / 1024
        ax.axhspan(base, base * (1 + RSS_BOUND), color=color, alpha=0.12, lw=0,
                   label=f"bound: minute 1 + {RSS_BOUND:.0%} (a, b)" if i == 0 else None)
    top = ax.get_ylim()[1]
    marks = {"kill": ("v", "k"), "cut-publisher": ("|", "C4"), "cut-subscriber": ("|", "C5")}
    for kind, (marker, color) in marks.items():
        xs = [f.at_s / MINUTE_S for f in out.faults if f.kind == kind]
        if xs:
            ax.scatter(xs, [top] * len(xs), marker=marker, color=color, s=14, clip_on=False,
                       label=kind if kind != "kill" else "kill -9 + restart")
    ax.set_xlabel("minute")
    ax.set_ylabel("relay RSS (MiB)")
    ax.set_xlim(0, minutes[-1])
    fig.legend(loc="outside lower center", ncol=4, frameon=False, columnspacing=1.0)
    return save(fig, out_dir, "soak-rss")


def section(out: Outcome, args: argparse.Namespace, load: tuple[float, float], commit: str) -> str:
    rate = sum(out.sent.values()) / out.duration_s
    kinds = Counter(f.kind for f in out.faults)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    verdict = ", ".join(f"{dc} {growth(out.readings, dc):+.1%}" for dc in LONG_LIVED)
    ok = all(growth(out.readings, dc) <= RSS_BOUND for dc in LONG_LIVED)
    lines = [
        TITLE, "",
        f"`benchmarks/soak.py --minutes {args.minutes} --seed {args.seed}`, {date}, "
        f"{platform.node()} ({os.cpu_count()} cores, shared; load average {load[0]:.2f} at the "
        f"start, {load[1]:.2f} at the end), commit {commit}. Loopback, real processes: relays a, b "
        "(clients) and m1, m2 (transit; reliable sessions through m1 while it lives, else m2); "
        f"{len(PUBLISHERS)} publishers and {len(SUBSCRIBERS)} subscribers on one reliable topic with "
        f"history ({HISTORY_COUNT:,} messages per relay), each client through its own TCP proxy; "
        f"{rate:.0f} messages/s published in all (105 bytes each), {rate * len(SUBSCRIBERS):.0f} "
        f"delivered. One fault a minute drawn from the seed: {kinds['kill']} kill -9 of a transit "
        f"relay with its restart {RESTART_AFTER_S:g} s later, {kinds['cut-publisher']} publisher and "
        f"{kinds['cut-subscriber']} subscriber connection cuts. RSS = VmRSS of /proc/PID/status, "
        "read after each minute.", "",
        f"**Relay RSS, end against after the first minute (bound +{RSS_BOUND:.0%}): {verdict}"
        f"{'' if ok else ' — over the bound'}.** Exactly once: "
        + (f"every one of {sum(out.sent.values()):,} messages at each of the {len(SUBSCRIBERS)} "
           "subscribers once, in its publisher's order." if not out.problems else
           f"**{len(out.problems)} problems**: " + "; ".join(out.problems[:4])), "",
        "| minute | " + " | ".join(f"{dc} (MiB)" for dc in RELAYS) + " | controller (MiB) |",
        "|---:|" + "---:|" * (len(RELAYS) + 1)]
    shown = sorted({0, 1, 2, 3, *range(5, args.minutes + 1, 5), args.minutes})
    for r in out.readings:
        if r.minute in shown:
            lines.append(f"| {r.minute} | " + " | ".join(
                f"{r.rss_kib[n] / 1024:.1f}" for n in (*RELAYS, "controller")) + " |")
    lines += ["", "Restarted transit relays (a new process at that minute's reading): " + "; ".join(
        f"{dc} at minutes {', '.join(map(str, restarts(out.readings, dc))) or 'none'}"
        for dc in RELAYS if dc not in LONG_LIVED) + "."]
    lines += ["", "What a and b hold at the end against after the first minute (`RelayCore.sizes`, "
              "tables that grew; objects the garbage collector tracks): "
              + "; ".join(f"{dc}: {grown(out.readings[1], out.readings[-1], dc)}" for dc in LONG_LIVED)
              + ".", "", "Every minute's reading: `benchmarks/results/soak.csv`.", "",
              "![Relay RSS over the soak](figures/soak-rss.svg)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=int, default=30, help="length of the run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default: %(default)s)")
    p.add_argument("--write", action="store_true",
                   help="rewrite the section in docs/benchmarks.md, the CSV and the figure")
    p.add_argument("--tracemalloc", action="store_true",
                   help="relays trace their allocations (slower); prints a's largest at minute 1 "
                        "and at the end")
    p.add_argument("--redraw", action="store_true",
                   help="draw the figure again from benchmarks/results/soak.csv (same --minutes and "
                        "--seed as the run that wrote it) and exit")
    args = p.parse_args(argv)
    if args.redraw:
        print("\n".join(str(x) for x in figure(Outcome(schedule(args.seed, args.minutes),
                                                       read_csv(CSV_PATH), {}, 0.0))))
        return 0
    if args.tracemalloc:
        os.environ["PYTHONTRACEMALLOC"] = "1"  # the relays inherit it (`Overlay._spawn`)
    if args.minutes < 2:
        p.error("--minutes must be at least 2 (the verdict compares the end with minute 1)")
    plan = schedule(args.seed, args.minutes)
    print(f"soak: {args.minutes} minutes, seed {args.seed}, faults: "
          + ", ".join(f"{f.at_s:.0f} s {f.kind} {f.target}" for f in plan), flush=True)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="soak-") as t:
        out = soak(Path(t), args.seed, args.minutes)
    load_end = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()
    text = section(out, args, (load_start, load_end), commit)
    print(text)
    if args.tracemalloc:
        for r in (out.readings[1], out.readings[-1]):
            print(f"a, minute {r.minute}, largest allocations:", *r.state["a"].get("top_allocations", []),
                  sep="\n  ")
    if args.write:
        write_csv(out, CSV_PATH)
        figure(out)
        write_section(TITLE, text)
    ok = not out.problems and all(growth(out.readings, dc) <= RSS_BOUND for dc in LONG_LIVED)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
