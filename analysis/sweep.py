"""Parameter sweeps: run one scenario in the simulator over a grid, each point in its own directory.

Owns the grammar of a sweep (`relay.parallel=1,2,4` — a dotted scenario field and its values;
`*` stands for every element of a list, as in `links.*.loss=0,0.001`; the field grammar is
`Scenario.with_updates`'s, the same as `stemflow sim --set`), the expansion of a grid into
points, running the points in parallel worker processes with a progress bar, and recording
each point's swept values in its manifest under `sweep` (which `analysis.load` turns into
`sweep.<name>` columns). Each point is validated with `Scenario.with_updates` before anything
runs, so a typo fails at once with the scenario's own error. Simulation itself is the
simulator's: a point runs `python -m stemflow.sim SCENARIO --out DIR --set key=value ...` (or
the module named by STEMFLOW_SIM_MODULE, which must take the same arguments).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemflow.analysis.load import MANIFEST_FILE, RESULTS_FILE, SWEEP_KEY
from tqdm import tqdm

from stemflow.scenario import Scenario, ScenarioError, load_scenario, parse_override_value

DEFAULT_WORKERS = 2
"""The machine this was built on has 2 cores; one simulator process per core."""
SIM_MODULE = "stemflow.sim"
SIM_MODULE_ENV = "STEMFLOW_SIM_MODULE"
"""Environment variable naming another simulator module with the same command line, if set."""
POINT_TIMEOUT_S = 1800.0
"""A single simulator run that takes longer than this is stuck, not slow."""


class SweepError(ValueError):
    """A sweep that cannot run: bad grammar, an unknown field, or a failed point."""


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: the scenario fields to set and the values to record as its labels."""

    updates: Mapping[str, Any]
    labels: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        items = self.labels or self.updates
        return "__".join(f"{k}={_text(v)}" for k, v in items.items()).replace("/", "_").replace(" ", "")


def _text(v: Any) -> str:
    if isinstance(v, list | tuple):
        return str(len(v))
    return str(v)


def parse_spec(spec: str) -> tuple[str, list[Any]]:
    """`relay.parallel=1,2,4` -> ("relay.parallel", [1, 2, 4])."""
    key, sep, values = spec.partition("=")
    key = key.strip()
    vals = [parse_override_value(v) for v in values.split(",") if v.strip()]
    if not sep or not key or not vals:
        raise SweepError(f"sweep {spec!r}: expected FIELD=V1,V2,... (e.g. relay.parallel=1,2,4,8)")
    return key, vals


def grid(specs: Sequence[str]) -> list[SweepPoint]:
    """The full factorial grid of the given sweeps, in the order given (last varies fastest)."""
    parsed = [parse_spec(s) for s in specs]
    keys = [k for k, _ in parsed]
    if len(set(keys)) != len(keys):
        raise SweepError(f"a field is swept twice: {keys}")
    return [SweepPoint(dict(zip(keys, combo, strict=True)), dict(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(v for _, v in parsed))]


def validate(scenario: Scenario, points: Sequence[SweepPoint]) -> None:
    """Apply every point's updates to the scenario, so a bad field or value fails before any run."""
    for pt in points:
        try:
            scenario.with_updates(dict(pt.updates))
        except ScenarioError as e:
            raise SweepError(f"sweep point {pt.name}: {e}") from None


def _set_args(updates: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for k, v in updates.items():
        args += ["--set", f"{k}={json.dumps(v) if isinstance(v, list | dict | bool) else v}"]
    return args


def sim_command(scenario_path: str, updates: Mapping[str, Any], out_dir: str,
                extra_args: Sequence[str] = ()) -> list[str]:
    """The simulator command line for one run (`--set` takes the same grammar, `*` included)."""
    module = os.environ.get(SIM_MODULE_ENV) or SIM_MODULE
    return [sys.executable, "-m", module, scenario_path, "--out", out_dir, *_set_args(updates),
            *extra_args]


def run_point(scenario_path: str, updates: Mapping[str, Any], labels: Mapping[str, Any],
              out_dir: str, extra_args: Sequence[str] = ()) -> str:
    """Simulate one point into `out_dir` and record its labels in the manifest; return the dir.

    Runs in a worker process. Raises `SweepError` with the simulator's last error line on failure.
    """
    out = Path(out_dir)
    cmd = sim_command(scenario_path, updates, str(out), extra_args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=POINT_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise SweepError(f"{out.name}: the simulator took more than {POINT_TIMEOUT_S:.0f} s") from None
    found = sorted(p.parent for p in out.rglob(RESULTS_FILE)) if out.is_dir() else []
    if done.returncode != 0 or not found:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise SweepError(f"{out.name}: simulator exited {done.returncode}: {last}")
    if labels:
        for d in found:
            record_labels(d, labels, updates)
    return str(out)


def record_labels(out: Path, labels: Mapping[str, Any], updates: Mapping[str, Any]) -> None:
    """Add the point's labels (`sweep`) and the concrete field updates to its manifest."""
    path = out / MANIFEST_FILE
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[SWEEP_KEY] = dict(labels)
    manifest["sweep_updates"] = dict(updates)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


@dataclass(frozen=True)
class Job:
    """One simulator run: a scenario file, the point to apply to it, and its results directory."""

    scenario_path: str
    point: SweepPoint
    out_dir: str


def run_jobs(jobs: Sequence[Job], workers: int = DEFAULT_WORKERS, extra_args: Sequence[str] = (),
             progress: bool = True, desc: str = "simulate") -> list[Path]:
    """Run jobs in parallel processes with one progress bar; return their results dirs in order.

    Every job's point is validated first. Fails with `SweepError` naming how many jobs failed and
    the first failure, after the others have finished.
    """
    scenarios: dict[str, Scenario] = {}
    for job in jobs:
        if job.scenario_path not in scenarios:
            scenarios[job.scenario_path] = load_scenario(job.scenario_path)
        validate(scenarios[job.scenario_path], [job.point])
    outs = [str(Path(j.out_dir).resolve()) for j in jobs]
    if len(set(outs)) != len(outs):
        raise SweepError("two runs would share a results directory")
    done: dict[int, Path] = {}
    errors: list[str] = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(run_point, j.scenario_path, dict(j.point.updates), dict(j.point.labels),
                               j.out_dir, tuple(extra_args)): i
                   for i, j in enumerate(jobs)}
        with tqdm(total=len(jobs), desc=desc, unit="run", disable=not progress, file=sys.stderr) as bar:
            for fut in as_completed(futures):
                try:
                    done[futures[fut]] = Path(fut.result())
                except SweepError as e:
                    errors.append(str(e))
                bar.update(1)
    if errors:
        raise SweepError(f"{len(errors)} of {len(jobs)} runs failed; first: {errors[0]}")
    return [done[i] for i in range(len(jobs))]


def sweep_jobs(scenario_path: str | Path, points: Sequence[SweepPoint], out_dir: str | Path) -> list[Job]:
    """One job per point, each into `out_dir/<point name>`; writes `out_dir/sweep.json`."""
    root = Path(out_dir)
    names = [p.name for p in points]
    if len(set(names)) != len(names) or "" in names:
        raise SweepError(f"sweep points need distinct, non-empty names: {names}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_text(json.dumps(
        {"scenario": str(scenario_path),
         "points": [{"dir": p.name, "labels": dict(p.labels), "updates": dict(p.updates)} for p in points]},
        indent=2, default=str) + "\n")
    return [Job(str(scenario_path), p, str(root / p.name)) for p in points]


def run_sweep(scenario_path: str | Path, points: Sequence[SweepPoint], out_dir: str | Path,
              workers: int = DEFAULT_WORKERS, extra_args: Sequence[str] = (),
              progress: bool = True) -> list[Path]:
    """Run every point of a sweep into `out_dir/<point>` in parallel; return the results dirs."""
    name = load_scenario(scenario_path).name
    return run_jobs(sweep_jobs(scenario_path, points, out_dir), workers, extra_args, progress,
                    desc=f"sweep {name}")
