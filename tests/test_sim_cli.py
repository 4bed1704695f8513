"""`python -m stemflow.sim`: shipped scenarios run and write their files; mistakes are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stemflow.sim.__main__ import main

SCENARIOS = sorted(Path("scenarios").glob("*.yaml"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_each_shipped_scenario_runs_and_writes_its_files(scenario, tmp_path, capsys):
    assert main([str(scenario), "--out", str(tmp_path)]) == 0
    for name in ("results.csv", "timings.csv", "manifest.json", "throughput.png", "throughput.svg",
                 "throughput.pdf",
                 "latency.png", "latency.svg"):
        assert (tmp_path / name).stat().st_size > 0, name
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["mode"] == "sim" and manifest["scenario_hash"] and "versions" in manifest
    assert {"congestion_control", "rwnd_bytes", "parallel", "relay_processing_delay_ms",
            "model_parameters"} <= set(manifest)
    out = capsys.readouterr().out
    assert "vs direct" in out or "direct" not in manifest["strategies"]


def test_multicast_scenario_plots_per_subscriber_rates(tmp_path):
    assert main(["scenarios/fig1-broadcast-5dc.yaml", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "multicast_rates.png").exists() and (tmp_path / "multicast_rates.svg").exists()


def test_same_scenario_and_seed_give_byte_identical_results(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["scenarios/fig1-broadcast-5dc.yaml", "--out", str(out), "--no-plots", "--quiet"]) == 0
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()


def test_the_seed_matters_where_the_model_draws(tmp_path):
    """Poisson message arrivals come from the seed: another seed, other arrival times."""
    args = ["scenarios/table1-us-east-asia-east.yaml", "--strategy", "multipath", "--no-plots", "--quiet",
            "--set", "sessions.0.workload.count=5", "--set", "sessions.0.workload.rate_per_s=2"]
    assert main([*args, "--out", str(tmp_path / "s1"), "--seed", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "s2"), "--seed", "2"]) == 0
    assert (tmp_path / "s1/results.csv").read_bytes() != (tmp_path / "s2/results.csv").read_bytes()


def test_set_accepts_unit_strings_for_quantities(tmp_path):
    assert main(["scenarios/table1-us-east-asia-east.yaml", "--strategy", "direct", "--no-plots", "--quiet",
                 "--out", str(tmp_path), "--set", "tcp.rwnd=8 MB"]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["rwnd_bytes"] == 8e6


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemflow.sim", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_bad_scenario_is_one_clear_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    data = Path("scenarios/data").resolve()
    text = Path("scenarios/table1-us-east-asia-east.yaml").read_text().replace("data/", f"{data}/")
    bad.write_text(text.replace("datacenter: asia-east1, access", "datacenter: asia-east9, access"))
    r = _run_cli(str(bad), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "clients.1.datacenter" in r.stderr and "asia-east9" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, expected", [
    (["--set", "relay.parallel=0"], "relay.parallel"),
    (["--set", "parameters.controler_rtt_ms=5"], "parameters.controler_rtt_ms"),
    (["--set", "nonsense"], "KEY=VALUE"),
    (["--set", "links.*.los=0.1"], "did you mean 'loss'"),
    (["--set", "tcp.rwnd=8 Mb"], "ambiguous"),
    (["--strategy", "no-such-strategy"], "no-such-strategy"),
])
def test_bad_overrides_are_clear_errors(args, expected, tmp_path, capsys):
    assert main(["scenarios/table1-us-east-asia-east.yaml", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_quick_start_prints_the_papers_numbers_beside_ours(tmp_path, capsys):
    assert main(["scenarios/table1-us-east-asia-east.yaml", "--out", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "against the paper: Liu & Li" in out
    direct_rr = next(ln for ln in out.splitlines() if ln.startswith("direct ") and "msg-1KB" in ln)
    assert "395.9" in direct_rr and "369.0" in direct_rr and "0.93" in direct_rr
    assert "no (the model's prediction)" in direct_rr
    shortest_bulk = next(ln for ln in out.splitlines() if ln.startswith("shortest ") and "bulk-1GB" in ln)
    assert "516.0" in shortest_bulk and "yes: relay.parallel" in shortest_bulk
    assert "+72.6 ms in the paper" in out and "2.85x in the paper" in out


def test_summary_keeps_unicast_sessions_and_multicast_subscribers_apart():
    from stemflow.sim.report import summarize, summary_table

    from stemflow.results import metric_row

    rows = [metric_row("r", "sim", "s", "direct", "uni", "bulk", "throughput_mbps", 100.0),
            metric_row("r", "sim", "s", "direct", "mc/a", "bulk", "throughput_mbps", 10.0),
            metric_row("r", "sim", "s", "direct", "mc/b", "bulk", "throughput_mbps", 30.0)]
    [s] = summarize(rows, ["direct"])
    assert (s.unicast_mbps, s.multicast_subscriber_mbps) == (100.0, 20.0)
    table = summary_table([s])
    assert "unicast Mbit/s" in table and "multicast Mbit/s per subscriber" in table


def test_set_with_a_wildcard_sets_every_link(tmp_path):
    """REPORT.md's commands pass `'links.*.loss=0.0001'`; it once ended in a traceback."""
    assert main(["scenarios/table1-us-east-asia-east.yaml", "--out", str(tmp_path), "--quiet", "--no-plots",
                 "--strategy", "direct", "--set", "links.*.loss=0.0001"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["set"] == {"links.*.loss": 0.0001}


def test_a_missing_file_is_a_clear_error(tmp_path):
    r = _run_cli(str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_results_do_not_depend_on_the_interpreters_hash_seed(tmp_path):
    """Two processes with different string hashing still write the same bytes (no set-order leaks)."""
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        args = ["scenarios/gcp-8-regions.yaml", "--out", str(out), "--strategy", "multipath", "--no-plots",
                "--quiet"]
        r = subprocess.run([sys.executable, "-m", "stemflow.sim", *args], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "PYTHONHASHSEED": seed})
        assert r.returncode == 0, r.stderr
        outs.append((out / "results.csv").read_bytes())
    assert outs[0] == outs[1]
