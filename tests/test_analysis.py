"""Tests of the analysis on small results directories built with the results writer.

These cover every table and figure the analysis promises and its errors, independent of the
simulator; `test_analysis_repro.py` runs the real simulator end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from stemflow.analysis import figures, tables
from stemflow.analysis.__main__ import main
from stemflow.analysis.load import load_results
from stemflow.analysis.run import analyze

from stemflow.results import COLUMNS, metric_row, write_manifest, write_results

STRATEGIES = ("direct", "shortest", "multipath")
THROUGHPUT = {"direct": 181.0, "shortest": 400.0, "multipath": 516.0}
RR_LATENCY = {"direct": 395.9, "shortest": 420.0, "multipath": 468.5}
DCS = ("us-east1", "us-central1", "asia-east1")


def make_run(path: Path, mode: str = "sim", scenario: str = "table1", scale: float = 1.0,
             sweep: dict | None = None, subscribers: int = 0, manifest: dict | None = None) -> Path:
    """A results dir like a simulator's: bulk throughput, 1 KB latency, links, solve time, bound."""
    rows = []
    for s in STRATEGIES:
        rid = f"{scenario}-{s}"
        rows.append(metric_row(rid, mode, scenario, s, "bulk-1GB", "bulk 1 GB", "throughput_mbps",
                               THROUGHPUT[s] * scale))
        rows.append(metric_row(rid, mode, scenario, s, "bulk-1GB", "bulk 1 GB", "completion_s",
                               8e3 / (THROUGHPUT[s] * scale)))
        rows += [metric_row(rid, mode, scenario, s, "msg-1KB", "messages 1 KB", "rr_latency_ms",
                            RR_LATENCY[s] + i) for i in (-1, 1)]
        rows.append(metric_row(rid, mode, scenario, s, "", "", "solve_s", 0.01))
        rows += [metric_row(rid, mode, scenario, s, f"{a}->{b}", "", "link_utilization", 0.5)
                 for a, b in zip(DCS, DCS[1:], strict=False)]
        for i in range(subscribers):
            rows.append(metric_row(rid, mode, scenario, s, "share", "bulk 1 GB", "throughput_mbps",
                                   THROUGHPUT[s] / subscribers + i))
        if subscribers:
            rows.append(metric_row(rid, mode, scenario, s, "share", "bulk 1 GB", "bound_mbps", 900.0))
    write_results(path / "results.csv", rows)
    meta = {"scenario": {"name": scenario, "hash": "abc"}, "seed": 1, "mode": mode}
    if sweep:
        meta["sweep"] = sweep
    write_manifest(path / "manifest.json", {**meta, **(manifest or {})})
    return path


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """A sim run, an emu run of the same scenario, a P sweep and a multicast sweep."""
    out = {"sim": make_run(tmp_path / "sim"), "emu": make_run(tmp_path / "emu", mode="emu", scale=0.95)}
    for p in (1, 2, 4):
        make_run(tmp_path / "sweep" / f"p{p}", sweep={"relay.parallel": p}, scale=1 + p / 4)
    out["sweep"] = tmp_path / "sweep"
    for n in (2, 3):
        make_run(tmp_path / "mc" / f"n{n}", scenario="fig1", subscribers=n)
    out["mc"] = tmp_path / "mc"
    bench = tmp_path / "routing.csv"
    pd.DataFrame({"datacenters": [4, 4, 8, 8], "sessions": [10, 10, 100, 100],
                  "strategy": ["multipath"] * 4,
                  "solve_s": [0.01, 0.02, 0.1, 0.12]}).to_csv(bench, index=False)
    out["bench"] = bench
    return out


def test_load_joins_manifest_and_sweep(runs: dict[str, Path]) -> None:
    df = load_results([runs["sim"], runs["sweep"]])
    assert set(COLUMNS) <= set(df.columns)
    assert (df["manifest.seed"] == 1).all()
    assert sorted(df["sweep.relay.parallel"].dropna().unique()) == [1, 2, 4]
    assert set(df["config"]) == {"", "relay.parallel=1", "relay.parallel=2", "relay.parallel=4"}


def test_strategy_table_ratios(runs: dict[str, Path]) -> None:
    t = tables.strategy_table(load_results([runs["sim"]]))
    assert list(t["strategy"]) == list(STRATEGIES)
    row = t.set_index("strategy").loc["multipath"]
    assert row["throughput_ratio"] == pytest.approx(516 / 181)
    assert row["rr_latency_ms"] == pytest.approx(468.5)
    assert row["rr_latency_delta_ms"] == pytest.approx(468.5 - 395.9)


def test_throughput_comes_from_bulk_sessions(tmp_path: Path) -> None:
    rows = [metric_row("r", "sim", "s", "direct", "bulk", "bulk 1 GB", "throughput_mbps", 100.0),
            metric_row("r", "sim", "s", "direct", "live", "stream 25 Mbit/s", "throughput_mbps", 25.0)]
    write_results(tmp_path / "r" / "results.csv", rows)
    t = tables.strategy_table(load_results([tmp_path / "r"]))
    assert t["throughput_mbps"].tolist() == [100.0]


def test_analysis_writes_every_table_and_figure(runs: dict[str, Path], tmp_path: Path) -> None:
    df = load_results([runs["sim"], runs["emu"], runs["sweep"], runs["mc"]])
    out = analyze(df, tmp_path / "out", runs["bench"])
    assert set(out.tables) == {"strategies", "gain-relay.parallel", "multicast", "parity",
                               "link_utilization", "solve_time"}
    for name in out.tables:
        for ext in ("csv", "md"):
            assert (tmp_path / "out" / "tables" / f"{name}.{ext}").stat().st_size > 0
    expected = {"strategies-table1-sim", "strategies-table1-emu", "gain-relay.parallel-table1-sim",
                "multicast-fig1-sim-share", "parity-table1", "utilization-table1-sim",
                "utilization-table1-emu", "solve_time"}
    assert expected <= set(out.figures)
    for paths in out.figures.values():
        assert sorted(p.suffix for p in paths) == [".pdf", ".png", ".svg"]
        assert all(p.stat().st_size > 1000 for p in paths)
    gain = out.tables["gain-relay.parallel"]
    assert sorted(gain["relay.parallel"].unique()) == [1, 2, 4]
    mp = gain[gain["strategy"] == "multipath"]
    assert mp["gain"].to_numpy() == pytest.approx([516 / 181] * 3)
    mc = out.tables["multicast"]
    assert sorted(mc["n_subscribers"].unique()) == [2, 3]
    assert (mc["bound_mbps"] == 900.0).all()
    parity = out.tables["parity"]
    thr = parity[parity["metric"] == "throughput_mbps"]
    assert thr["emu_over_sim"].to_numpy() == pytest.approx([0.95] * 3)
    assert thr["within_band"].all()
    assert "solve_s" not in set(parity["metric"])
    index = (tmp_path / "out" / "index.md").read_text()
    assert "## Skipped" in index and "strategy figures of sweep points" in index


def test_figures_have_labelled_axes(runs: dict[str, Path]) -> None:
    df = load_results([runs["sim"], runs["emu"], runs["sweep"], runs["mc"]])
    t = tables.strategy_table(df)
    fig = figures.strategy_figure(t[(t["mode"] == "sim") & (t["config"] == "")], "table1", "sim")
    thr, lat = fig.axes
    assert thr.get_ylabel() == "throughput (Mbit/s)"
    assert lat.get_ylabel() == "request-response latency (ms)"
    assert "table1 (sim)" in fig._suptitle.get_text()

    g = tables.gain_table(df, "relay.parallel")
    ax = figures.gain_figure(g.drop(columns=["mode", "scenario"]), "relay.parallel", "table1", "sim").axes[0]
    assert ax.get_xlabel().startswith("parallel TCP connections")
    assert ax.get_ylabel() == "throughput gain over direct (×)"
    assert {"shortest", "multipath"} <= {t.get_text() for t in ax.get_legend().get_texts()}

    mc = tables.multicast_table(df)
    ax = figures.multicast_figure(mc[mc["session"] == "share"], "fig1", "sim", "share").axes[0]
    assert ax.get_ylabel() == "mean rate per subscriber (Mbit/s)"
    assert "network-coding bound" in {t.get_text() for t in ax.get_legend().get_texts()}

    p = tables.parity_table(df)
    ax = figures.parity_figure(p, "table1").axes[0]
    assert ax.get_xlabel() == "simulated throughput (Mbit/s)"
    assert ax.get_ylabel() == "emulated throughput (Mbit/s)"

    u = tables.utilization_table(df)
    fig = figures.utilization_figure(u[(u["mode"] == "sim") & (u["config"] == "")], "table1", "sim")
    assert fig.axes[0].get_xlabel() == "to datacenter" and fig.axes[0].get_ylabel() == "from datacenter"
    assert "link utilization" in fig.axes[-1].get_ylabel()  # the colorbar


def test_skips_are_explained(runs: dict[str, Path], tmp_path: Path) -> None:
    out = analyze(load_results([runs["sim"]]), tmp_path / "out", tmp_path / "missing.csv")
    skipped = "\n".join(out.skipped)
    assert "sim vs emu parity: only mode ['sim'] present" in skipped
    assert "gain vs swept parameters" in skipped
    assert "multicast" in skipped
    assert "no routing benchmark output" in skipped
    assert "parity" not in out.tables


def test_cli_writes_outputs(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main([str(runs["sim"]), str(runs["emu"]), "--out", str(tmp_path / "o"),
               "--benchmark", str(runs["bench"])])
    assert rc == 0
    assert (tmp_path / "o" / "tables" / "strategies.md").read_text().count("| table1 |") == 6
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("break_it, message", [
    (lambda p: p.write_text("run_id,mode,scenario\nr,sim,s\n"), "missing columns ['strategy'"),
    (lambda p: p.write_text(",".join(COLUMNS) + "\n"), "has no rows"),
    (lambda p: p.write_text(",".join(COLUMNS) + "\nr,sim,s,direct,x,bulk,throughput_mbps,fast,Mbit/s,0\n"),
     "column 'value' row 2: expected a number, found 'fast'"),
    (lambda p: p.unlink(), "no results.csv in it or below it"),
])
def test_bad_results_dir_is_a_one_line_error(runs: dict[str, Path], tmp_path: Path, capsys, break_it,
                                            message: str) -> None:
    break_it(runs["sim"] / "results.csv")
    rc = main([str(runs["sim"]), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_parity_brings_emulated_rates_to_scenario_units(runs: dict[str, Path], tmp_path: Path) -> None:
    make_run(tmp_path / "scaled", mode="emu", scale=0.25, manifest={"emu": {"rate_scale": 0.25}})
    p = tables.parity_table(load_results([runs["sim"], tmp_path / "scaled"]))
    thr = p[p["metric"] == "throughput_mbps"]
    assert thr["emu_over_sim"].to_numpy() == pytest.approx([1.0] * 3)
    lat = p[p["metric"] == "rr_latency_ms"]
    assert lat["emu_over_sim"].to_numpy() == pytest.approx([1.0] * 3)
    assert not (p["metric"] == "completion_s").any()
    make_run(tmp_path / "done", mode="emu", scale=0.25,
             manifest={"rate_scale": 0.25, "rates_in_scenario_units": True})
    p = tables.parity_table(load_results([runs["sim"], tmp_path / "done"]))
    assert p[p["metric"] == "throughput_mbps"]["emu_over_sim"].to_numpy() == pytest.approx([0.25] * 3)


def test_bad_manifest_is_a_clear_error(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    (runs["sim"] / "manifest.json").write_text("{not json")
    assert main([str(runs["sim"]), "--out", str(tmp_path / "o")]) == 2
    assert "manifest.json: not valid JSON" in capsys.readouterr().err


def test_solve_time_table_reads_benchmark_layouts() -> None:
    tidy = pd.DataFrame({"datacenters": [4, 4, 8], "metric": ["solve_s", "build_s", "solve_s"],
                         "value": [0.1, 5.0, 0.3], "strategy": ["multipath"] * 3})
    t = tables.solve_time_table(tidy)
    assert t["time_s"].tolist() == [0.1, 0.3]
    wide = pd.DataFrame({"config": ["fast"] * 4, "solver": ["highs"] * 4, "datacenters": [5, 5, 10, 10],
                         "sessions": [10] * 4, "solve_s": [1.0, 1.0, 2.0, 9.0],
                         "total_s": [2.0, 4.0, 6.0, 9.0],
                         "status": ["ok", "ok", "ok", "skipped"]})
    t = tables.solve_time_table(wide)
    assert t["time_s"].tolist() == [3.0, 6.0] and t["repetitions"].tolist() == [2, 1]
    assert set(t["time_column"]) == {"total_s"}
    fig = figures.solve_time_figure(t, "bench.csv")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "datacenters (count)" and ax.get_ylabel() == "decision time (s)"
    assert "paths + build + solve" in fig.get_suptitle()
    assert tables.solve_time_table(pd.DataFrame({"x": [1], "y": [2]})).empty
    # benchmarks/routing.py's layout: a median per row with its own range; sizes that did not
    # finish (inf) are left out, not drawn
    routing = pd.DataFrame({"kind": ["full", "full", "scale"], "datacenters": [20, 40, 100],
                            "sessions": [300, 1000, 10000], "fairness": ["exact"] * 3,
                            "engine": ["now"] * 3, "median_s": [0.75, 16.8, float("inf")],
                            "min_s": [0.68, 15.2, float("nan")], "max_s": [0.77, 19.8, float("nan")]})
    t = tables.solve_time_table(routing)
    assert t["time_s"].tolist() == [0.75, 16.8] and t["time_max_s"].tolist() == [0.77, 19.8]
    assert figures.solve_time_figure(t, "routing.csv").axes[0].get_title() == "full plan"
    two = pd.concat([routing, routing.assign(engine="c134f9e", fairness="approx")])
    fig = figures.solve_time_figure(tables.solve_time_table(two), "routing.csv")
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == [
        "approximate (no LP), engine of c134f9e", "exact max-min, this engine"]  # words, not k=v


def test_markdown_table_format() -> None:
    md = tables.to_markdown(pd.DataFrame({"strategy": ["direct"], "throughput_mbps": [181.04],
                                          "ok": [True]}))
    assert md.splitlines()[0] == "| strategy | throughput (Mbit/s) | ok |"  # words, not column names
    assert md.splitlines()[2] == "| direct | 181.0 | yes |"


def test_manifest_written_json_is_read(runs: dict[str, Path]) -> None:
    m = json.loads((runs["sim"] / "manifest.json").read_text())
    assert m["scenario"]["name"] == "table1"


def test_missing_bound_is_recomputed_from_the_runs_scenario(tmp_path: Path) -> None:
    from stemflow.analysis.bounds import add_missing_bounds

    from stemflow.network import NetworkState
    from stemflow.routing import demands_from_scenario
    from stemflow.routing.paths import path_index
    from stemflow.routing.unicast import session_bound_mbps
    from stemflow.scenario import load_scenario

    source = Path(__file__).resolve().parents[1] / "scenarios" / "fig1-broadcast-5dc.yaml"
    scenario = load_scenario(source)
    subs = scenario.session("file-share").subscribers[:2]
    rows = [metric_row("r", "sim", scenario.name, "multicast", f"file-share/{v}", "bulk", "throughput_mbps",
                       100.0) for v in subs]
    write_results(tmp_path / "run" / "results.csv", rows)
    write_manifest(tmp_path / "run" / "manifest.json", {
        "scenario_source": str(source), "set": {"sessions.1.subscribers": subs}})
    df, notes = add_missing_bounds(load_results([tmp_path / "run"]))
    assert notes == []
    bound = df[df["metric"] == "bound_mbps"]
    assert bound["session"].tolist() == ["file-share"]
    assert bound["bound_source"].tolist() == ["recomputed"]
    two = scenario.with_updates({"sessions.1.subscribers": subs})
    net = NetworkState.from_scenario(two)
    d = next(x for x in demands_from_scenario(two, net) if x.session == "file-share")
    assert bound["value"].iloc[0] == pytest.approx(session_bound_mbps(path_index(net), d))
    mc = tables.multicast_table(df)
    assert mc["n_subscribers"].tolist() == [2] and mc["bound_mbps"].notna().all()

    (tmp_path / "run" / "manifest.json").write_text("{}")
    _, notes = add_missing_bounds(load_results([tmp_path / "run"]))
    assert notes and "names no readable scenario file" in notes[0]
