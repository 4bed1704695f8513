"""Reproduce the Stemflow demo abstract (INFOCOM 2017) from the scenarios, in one command.

Owns the list of runs the reproduction needs (Table I, the sweeps over P, window cap and loss,
the no-gain regime, the Fig. 1 broadcast and its multicast sweep over subscribers), running them
in the simulator (and the emulator when allowed), the analysis pass over all of them, and
handing the results to `report.py`, which writes REPORT.md. It computes no numbers itself.

    python papers/stemflow-infocom17-demo/reproduce.py            # full (sim; emu if allowed)
    python papers/stemflow-infocom17-demo/reproduce.py --quick    # fewer sweep points, for CI

The emulation runs only as root with Mininet's `mnexec` present and `--emu` (or STEMFLOW_EMU=1).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from report import ReportInputs, write_report  # noqa: E402
from stemflow.analysis.load import load_results  # noqa: E402
from stemflow.analysis.run import analyze  # noqa: E402
from stemflow.analysis.sweep import Job, SweepError, SweepPoint, run_jobs, sim_command, sweep_jobs  # noqa: E402

from stemflow.results import ResultsError, read_results, write_manifest  # noqa: E402
from stemflow.scenario import Scenario, ScenarioError, load_scenario  # noqa: E402

SCENARIOS = REPO / "scenarios"
TABLE1 = "table1-us-east-asia-east"
FIG1 = "fig1-broadcast-5dc"
NO_GAIN = "no-gain-uniform"
BENCHMARK = REPO / "benchmarks" / "results" / "routing.csv"

PARALLEL = {"full": [1, 2, 4, 8, 16], "quick": [1, 4, 16]}
"""P values: from one connection per hop to 16 (the paper's relays keep 'parallel' connections)."""
WINDOW_FACTORS = {"full": [0.25, 0.5, 1.0, 2.0, 4.0], "quick": [0.5, 1.0, 4.0]}
"""Window caps as multiples of the scenario's own (the one that explains 181 Mbit/s)."""
LOSS = {"full": [0.0, 1e-5, 1e-4, 1e-3, 1e-2], "quick": [0.0, 1e-4, 1e-2]}
"""Random loss set on every overlay link (the direct path is built from the same links)."""
EMU_RATE_SCALE = 0.25
"""Emulated rates are scaled so that Table I fits in ~1 Gbit/s on 2 cores (ARCHITECTURE §7)."""


@dataclass
class Runs:
    """The reproduction's runs, grouped by what they are for, and what was not run and why."""

    jobs: list[Job] = field(default_factory=list)
    groups: dict[str, list[Path]] = field(default_factory=dict)
    emu: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def add(self, group: str, jobs: list[Job]) -> None:
        self.jobs += jobs
        self.groups.setdefault(group, []).extend(Path(j.out_dir) for j in jobs)


def scenario_path(name: str) -> Path:
    return SCENARIOS / f"{name}.yaml"


def plan_runs(out: Path, size: str) -> Runs:
    """Every simulator run of the reproduction (nothing runs yet)."""
    runs = Runs()
    sim = out / "sim"
    t1 = str(scenario_path(TABLE1))
    table1 = load_scenario(t1)
    runs.add("table1", [Job(t1, SweepPoint({}), str(sim / TABLE1))])
    runs.add("parallel", sweep_jobs(t1, [SweepPoint({"relay.parallel": p}, {"relay.parallel": p})
                                         for p in PARALLEL[size]], sim / "sweep-parallel"))
    windows = [round(table1.tcp.rwnd_bytes * f) for f in WINDOW_FACTORS[size]]
    runs.add("window", sweep_jobs(t1, [SweepPoint({"tcp.rwnd_bytes": w}, {"tcp.rwnd_bytes": w})
                                       for w in windows], sim / "sweep-window"))
    runs.add("loss", sweep_jobs(t1, [SweepPoint({"links.*.loss": p}, {"loss": p}) for p in LOSS[size]],
                                sim / "sweep-loss"))
    if scenario_path(NO_GAIN).exists():
        runs.add("no-gain", [Job(str(scenario_path(NO_GAIN)), SweepPoint({}), str(sim / NO_GAIN))])
    else:
        runs.skipped.append(f"no-gain regime: {scenario_path(NO_GAIN).relative_to(REPO)} does not exist")
    f1 = str(scenario_path(FIG1))
    fig1 = load_scenario(f1)
    runs.add("fig1", [Job(f1, SweepPoint({}), str(sim / FIG1))])
    runs.add("multicast", sweep_jobs(f1, subscriber_points(fig1, size), sim / "sweep-subscribers"))
    return runs


def subscriber_points(s: Scenario, size: str) -> list[SweepPoint]:
    """The multicast sessions of `s` with their first k subscribers, for k = 1 .. all."""
    multi = [(i, x.subscribers) for i, x in enumerate(s.sessions) if len(x.subscribers) > 1]
    most = max(len(subs) for _, subs in multi)
    ks = list(range(1, most + 1)) if size == "full" else sorted({1, max(1, most // 2), most})
    return [SweepPoint({f"sessions.{i}.subscribers": subs[:k] for i, subs in multi}, {"subscribers": k})
            for k in ks]


def emu_allowed(flag: bool) -> tuple[bool, str]:
    """Whether the emulation may run here, and if not, why."""
    if not (flag or os.environ.get("STEMFLOW_EMU") == "1"):
        return False, "not requested (pass --emu or set STEMFLOW_EMU=1)"
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    if shutil.which("mnexec") is None:
        return False, "Mininet's mnexec is not installed (Debian package 'mininet')"
    return True, ""


def run_emu(runs: Runs, out: Path, scale: float, size_scale: float) -> None:
    """Table I and the Fig. 1 broadcast in the emulator (one after the other: each needs the
    whole machine).

    The emulator writes into `out/emu-raw/<name>`; what the analysis reads is a copy in
    `out/emu/<name>` without the sessions that failed the emulator's own delivery check
    (lost, duplicated or reordered messages), so a broken transfer never counts as a rate.
    """
    for name in (TABLE1, FIG1):
        raw, dest = out / "emu-raw" / name, out / "emu" / name
        cmd = [sys.executable, "-m", "stemflow.emu", str(scenario_path(name)), "--out", str(raw),
               "--rate-scale", str(scale), "--size-scale", str(size_scale)]
        runs.commands.append(shlex.join(_rel(cmd)))
        print(f"emulating {name} (rate scale {scale}) ...", file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        if not (raw / "results.csv").exists() or not (raw / "manifest.json").exists():
            runs.skipped.append(f"emulation of {name}: exited {done.returncode} without results: {last}")
            continue
        kept, dropped = checked_copy(raw, dest)
        for d in dropped:
            runs.skipped.append(f"emulation of {name}: {d} failed the emulator's delivery check; its rows "
                                "are left out")
        if kept:
            runs.emu[name] = dest
        else:
            runs.skipped.append(f"emulation of {name}: exited {done.returncode}, nothing usable: {last}")


def run_fig1_video(runs: Runs, out: Path) -> Path | None:
    """The Fig. 1 video broadcast's emulations (`benchmarks/broadcast_emu.py`, its defaults)
    into a fresh `out/fig1-video.csv`; None (and a note) where the emulator cannot run."""
    ok, why = emu_allowed(True)
    if not ok:
        runs.skipped.append(f"Fig. 1 video emulations: {why}; the saved results are reported")
        return None
    dest = out / "fig1-video.csv"
    dest.unlink(missing_ok=True)
    cmd = [sys.executable, str(REPO / "benchmarks" / "broadcast_emu.py"), "--results", str(dest)]
    runs.commands.append(shlex.join(_rel(cmd)))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not dest.exists():
        last = (done.stderr.strip() or "no output").splitlines()[-1]
        runs.skipped.append(f"Fig. 1 video emulations: exited {done.returncode}: {last}; the saved "
                            "results are reported")
        return None
    return dest


def checked_copy(raw: Path, dest: Path) -> tuple[int, list[str]]:
    """Copy an emulation's results without the (strategy, session) pairs that failed delivery.

    Returns the number of rows kept and a description of each pair left out.
    """
    manifest = json.loads((raw / "manifest.json").read_text())
    bad = {(c["strategy"], c["session"]): c for c in manifest.get("delivery", [])
           if c["received"] != c["expected"] or not c["in_order"] or c["duplicates"]}
    df = read_results(raw)
    sid = df["session"].astype(str).str.split("/", n=1).str[0]
    drop = [(st, se) in bad for st, se in zip(df["strategy"], sid, strict=True)]
    kept = df[[not d for d in drop]]
    dest.mkdir(parents=True, exist_ok=True)
    kept.to_csv(dest / "results.csv", index=False)
    manifest["delivery_excluded"] = [f"{st}/{se}" for st, se in bad]
    write_manifest(dest / "manifest.json", manifest)
    return len(kept), [f"{st} {se} ({c['received']}/{c['expected']} delivered, in order: {c['in_order']}, "
                       f"duplicates: {c['duplicates']})" for (st, se), c in bad.items()]


def _rel(cmd: list[str]) -> list[str]:
    """A command as a reader would type it from the repository root."""
    out = ["python" if c == sys.executable else c for c in cmd]
    return [str(Path(c).relative_to(REPO)) if c.startswith(str(REPO)) else c for c in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer sweep points (CI: a few minutes)")
    p.add_argument("--out", help="results directory (default: results/infocom17-demo[-quick])")
    p.add_argument("--report", help="where to write REPORT.md (default: this folder's REPORT.md; "
                                    "with --quick: OUT/REPORT.md)")
    p.add_argument("--workers", type=int, default=2, help="parallel simulator processes (default: 2)")
    p.add_argument("--emu", action="store_true", help="also run the emulation (root + Mininet)")
    p.add_argument("--rate-scale", type=float, default=EMU_RATE_SCALE, help="emulation rate scale")
    p.add_argument("--size-scale", type=float, default=1.0,
                   help="emulation: multiply bulk sizes (default 1: the sim's sizes, so parity compares "
                        "like with like)")
    p.add_argument("--fig1-video-emu", action="store_true",
                   help="rerun the Fig. 1 video broadcast's emulations (root; about 25 min) into "
                        "OUT/fig1-video.csv instead of reading benchmarks/results/fig1-video.csv")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    size = "quick" if args.quick else "full"
    out = Path(args.out or REPO / "results" / ("infocom17-demo-quick" if args.quick else "infocom17-demo"))
    default_report = out / "REPORT.md" if args.quick else HERE / "REPORT.md"
    report_path = Path(args.report) if args.report else default_report
    started = time.monotonic()
    try:
        runs = plan_runs(out, size)
        runs.commands += [shlex.join(_rel(sim_command(j.scenario_path, j.point.updates, j.out_dir)))
                          for j in runs.jobs]
        run_jobs(runs.jobs, workers=args.workers, progress=not args.no_progress,
                 desc=f"reproduce ({size}): simulate")
        ok, why = emu_allowed(args.emu)
        if ok:
            run_emu(runs, out, args.rate_scale, args.size_scale)
        else:
            runs.skipped.append(f"emulation: {why}")
        fig1_video = run_fig1_video(runs, out) if args.fig1_video_emu else None
        dirs = [d for ds in runs.groups.values() for d in ds] + list(runs.emu.values())
        df = load_results(dirs)
        outcome = analyze(df, out / "analysis", BENCHMARK)
        inputs = ReportInputs(repo=REPO, out=out, report_path=report_path, size=size, runs=runs.groups,
                              emu=runs.emu, outcome=outcome, df=df, skipped=runs.skipped,
                              commands=runs.commands, argv=["python", str(Path(__file__).relative_to(REPO)),
                                                            *(argv if argv is not None else sys.argv[1:])],
                              elapsed_s=time.monotonic() - started, emu_rate_scale=args.rate_scale,
                              workers=args.workers, fig1_video_results=fig1_video)
        path = write_report(inputs)
    except (ResultsError, ScenarioError, SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({time.monotonic() - started:.0f} s); analysis in {out / 'analysis'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
