"""`python -m stemflow.analysis` (and `stemflow analyze`): the command line of the analysis.

Owns argument parsing and turning every user mistake into a one-line error with exit status 2.
Two forms:

    python -m stemflow.analysis RESULTS_DIR [RESULTS_DIR ...] [--out DIR] [--benchmark CSV]
    python -m stemflow.analysis sweep SCENARIO --sweep FIELD=V1,V2,... [--sweep ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stemflow.cli_args import ArgumentParser, add_version, int_between
from stemflow.results import ResultsError

USAGE_EXIT = 2


def _analyze_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="stemflow analyze",
        description="Tables (Markdown, CSV) and figures (PNG, SVG) from results directories of the "
                    "simulator and the emulator. A directory without results.csv stands for every "
                    "results directory below it (e.g. a sweep). To run a sweep: "
                    "'stemflow analyze sweep --help'.")
    add_version(p)
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="results directories (sim or emu)")
    p.add_argument("--out", default="results/analysis", help="output directory (default: %(default)s)")
    p.add_argument("--benchmark", default="benchmarks/results/routing.csv",
                   help="routing benchmark CSV for the solve-time figure (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _sweep_parser() -> argparse.ArgumentParser:
    from stemflow.analysis.sweep import DEFAULT_WORKERS

    p = ArgumentParser(
        prog="stemflow analyze sweep",
        description="Run the simulator on a scenario over a parameter grid, each point in its own "
                    "results directory (swept values recorded in its manifest), then analyze.")
    add_version(p)
    p.add_argument("scenario", help="scenario YAML file, or the name of a shipped one")
    p.add_argument("--sweep", action="append", required=True, metavar="FIELD=V1,V2,...",
                   help="dotted scenario field and its values, e.g. relay.parallel=1,2,4,8,16 or "
                        "links.*.loss=0,0.001 ('*' = every list element); repeat for a grid")
    p.add_argument("--out", help="output directory (default: results/sweep-<scenario name>)")
    p.add_argument("--workers", type=int_between(1, 64), default=DEFAULT_WORKERS, metavar="N",
                   help="parallel simulator processes (default: %(default)s)")
    p.add_argument("--no-analyze", action="store_true", help="only run the points")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main_analyze(argv: list[str]) -> int:
    args = _analyze_parser().parse_args(argv)
    from stemflow.analysis.load import load_results
    from stemflow.analysis.run import analyze

    df = load_results(args.results)
    outcome = analyze(df, Path(args.out), Path(args.benchmark), progress=not args.no_progress)
    _print_outcome(outcome)
    return 0


def main_sweep(argv: list[str]) -> int:
    args = _sweep_parser().parse_args(argv)
    from stemflow.analysis.load import load_results
    from stemflow.analysis.run import analyze
    from stemflow.analysis.sweep import grid, run_sweep

    from stemflow.scenario import load_scenario

    points = grid(args.sweep)
    out = Path(args.out or f"results/sweep-{load_scenario(args.scenario).name}")
    dirs = run_sweep(args.scenario, points, out, workers=args.workers, progress=not args.no_progress)
    print(f"{len(dirs)} points in {out}")
    if not args.no_analyze:
        outcome = analyze(load_results(dirs), out / "analysis", None, progress=not args.no_progress)
        _print_outcome(outcome)
    return 0


def _print_outcome(outcome) -> None:
    tables = len(outcome.tables)
    figs = len(outcome.figures)
    print(f"wrote {tables} tables and {figs} figures to {outcome.out_dir} (see index.md)")
    for s in outcome.skipped:
        print(f"  skipped {s}")


def main(argv: list[str] | None = None) -> int:
    from stemflow.analysis.sweep import SweepError

    from stemflow.scenario import ScenarioError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "sweep":
            return main_sweep(argv[1:])
        return main_analyze(argv)
    except (ResultsError, ScenarioError, SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
