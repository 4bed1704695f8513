"""Reading results directories into one DataFrame, with each run's manifest joined to its rows.

Owns the discovery of results directories (a directory holding `results.csv`, or a sweep directory
whose sub-directories hold them), the schema checks beyond `stemflow.results.read_results` (a
numeric `value`, a readable manifest), and the columns added to the tidy table:

- `results_dir`: the directory a row came from;
- `manifest.<key>`: every scalar of the run's manifest (nested keys joined by dots);
- `sweep.<name>`: the swept parameters of a sweep point (from the manifest's `sweep` mapping);
- `config`: a short label of the swept values (`relay.parallel=8`), empty for a plain run;
- `rate_scale_divided`: the factor an emulated rate was divided by to be in the scenario's
  units (1 for everything else; see `in_scenario_units`); `run_rate_scale`: the emulated run's
  rate scale (1 for sim).

It computes nothing from the values; `tables` and `figures` do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from stemflow.results import COLUMNS, ResultsError, read_results

RESULTS_FILE = "results.csv"
MANIFEST_FILE = "manifest.json"
TIMINGS_FILE = "timings.csv"
SWEEP_KEY = "sweep"
"""Manifest key under which the sweep helper records a point's swept values."""
SWEEP_PREFIX = "sweep."
MANIFEST_PREFIX = "manifest."


def find_results_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path to the results directories it stands for, in a stable order.

    A directory with `results.csv` is one run; a directory without one but with sub-directories
    that have one (a sweep's output) stands for all of them. Anything else is an error.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == RESULTS_FILE:
            found.append(p.parent)
        elif (p / RESULTS_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            subs = sorted(q.parent for q in p.rglob(RESULTS_FILE))
            if not subs:
                raise ResultsError(f"{p}: no {RESULTS_FILE} in it or below it")
            found.extend(subs)
        else:
            raise ResultsError(f"{p}: no such results directory")
    return list(dict.fromkeys(found))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping to dotted keys; lists become JSON text so every value is a scalar."""
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def read_manifest(results_dir: Path) -> dict[str, Any]:
    """The run's manifest, or an empty mapping when the directory has none."""
    path = Path(results_dir) / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def config_label(sweep: Mapping[str, Any]) -> str:
    """`a=1, b=2` for a sweep point's values; empty for a plain run."""
    return ", ".join(f"{k}={_short(v)}" for k, v in sweep.items())


def _short(v: Any) -> str:
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return read_results(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ResultsError(f"{path}: not a readable CSV ({first})") from None


def read_one(results_dir: Path) -> pd.DataFrame:
    """One results directory as a DataFrame with its manifest and sweep values joined.

    `timings.csv` beside `results.csv` (the simulator keeps wall-clock solve times apart, so
    that results are byte-identical for a seed) is read too when present, in the same schema.
    """
    df = _read_csv(Path(results_dir) / RESULTS_FILE)
    timings = Path(results_dir) / TIMINGS_FILE
    if timings.exists() and timings.stat().st_size > 0:
        t = pd.read_csv(timings)
        if not t.empty:
            df = pd.concat([df, _read_csv(timings)], ignore_index=True)
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = values.isna() & df["value"].notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ResultsError(f"{Path(results_dir) / RESULTS_FILE}: column 'value' row {i + 2}: "
                           f"expected a number, found {df['value'].iloc[i]!r}")
    df["value"] = values.astype(float)
    df["t_s"] = pd.to_numeric(df["t_s"], errors="coerce").fillna(0.0)
    for c in COLUMNS:
        if c not in ("value", "t_s"):
            df[c] = df[c].fillna("").astype(str)
    manifest = read_manifest(results_dir)
    sweep = manifest.get(SWEEP_KEY) or {}
    if not isinstance(sweep, Mapping):
        raise ResultsError(f"{Path(results_dir) / MANIFEST_FILE}: '{SWEEP_KEY}' must be a mapping")
    extra: dict[str, Any] = {"results_dir": str(results_dir), "config": config_label(sweep)}
    extra.update({MANIFEST_PREFIX + k: v
                  for k, v in flatten({k: v for k, v in manifest.items() if k != SWEEP_KEY}).items()})
    extra.update({SWEEP_PREFIX + k: v for k, v in sweep.items()})
    return df.assign(**{k: [v] * len(df) for k, v in extra.items()})


def load_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Every results directory under `paths`, concatenated into one tidy DataFrame."""
    dirs = find_results_dirs(paths)
    if not dirs:
        raise ResultsError("no results directories given")
    frames = [read_one(d) for d in dirs]
    return in_scenario_units(pd.concat(frames, ignore_index=True, sort=False))


RATE_UNIT = "Mbit/s"
RATE_SCALE_KEY = "rate_scale"
UNSCALED_FLAG = "rates_in_scenario_units"


def _manifest_keys(df: pd.DataFrame, last: str) -> list[str]:
    """Manifest columns whose last dotted component is `last` (`manifest.emu.rate_scale`)."""
    return [c for c in df.columns if c.startswith(MANIFEST_PREFIX) and c.split(".")[-1] == last]


def in_scenario_units(df: pd.DataFrame) -> pd.DataFrame:
    """Emulated rates (Mbit/s rows) divided by the run's rate scale, so they compare with sim.

    The emulator runs every bandwidth and window cap times `rate_scale` (recorded in its
    manifest, under any key ending in `rate_scale`) and measures what it sees. A manifest that
    sets `rates_in_scenario_units: true` says the emulator already divided. Applied once, by
    `load_results`; the factor used is kept in `rate_scale_divided`.
    """
    out = df.copy()
    out["rate_scale_divided"] = 1.0
    out["run_rate_scale"] = 1.0
    scale_cols = _manifest_keys(df, RATE_SCALE_KEY)
    if not scale_cols:
        return out
    flag_cols = _manifest_keys(df, UNSCALED_FLAG)
    scale = pd.to_numeric(df[scale_cols].bfill(axis=1).iloc[:, 0], errors="coerce").fillna(1.0)
    out["run_rate_scale"] = scale.where(df["mode"] == "emu", 1.0)
    done = df[flag_cols].fillna(False).astype(bool).any(axis=1) if flag_cols else False
    rescale = (df["mode"] == "emu") & (df["unit"] == RATE_UNIT) & (scale > 0) & ~done
    out.loc[rescale, "value"] = out.loc[rescale, "value"] / scale[rescale]
    out.loc[rescale, "rate_scale_divided"] = scale[rescale]
    return out


def session_ids(df: pd.DataFrame) -> pd.Series:
    """The session id of each row: the `session` column up to the first '/' (`id/subscriber`)."""
    return df["session"].astype(str).str.split("/", n=1).str[0]


def sweep_columns(df: pd.DataFrame) -> list[str]:
    """The swept-parameter columns present in `df`, in order of first appearance."""
    return [c for c in df.columns if c.startswith(SWEEP_PREFIX)]


def manifest_value(df: pd.DataFrame, *keys: str) -> Any:
    """The first non-missing value among manifest keys (dotted), or None."""
    for k in keys:
        col = MANIFEST_PREFIX + k
        if col in df.columns:
            s = df[col].dropna()
            if not s.empty:
                return s.iloc[0]
    return None
