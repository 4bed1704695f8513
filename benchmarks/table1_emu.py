"""Table I in emulation: direct TCP vs Stemflow, emulated and simulated on the same scaled scenario.

Runs `python -m stemflow.emu` on the paper's Table I scenario with every rate and the TCP window
cap scaled by F (two shared cores carry about 1 Gbit/s of emulated traffic) and the bulk transfer
shortened by S, then `python -m stemflow.sim` on the very scenario file the emulator wrote (same
F, same S), and writes the section "## Table I in emulation" of docs/benchmarks.md.

The Table I row is `direct` vs `shortest` (the paper's Stemflow: one overlay path, P persistent
connections per hop; papers/stemflow-infocom17-demo/MODEL.md). `multipath` over the relays in all
five regions plans about 8 times shortest's rate, more than the emulation budget at F, so it runs
on its own at a smaller scale F_mp (--multipath-rate-scale) and is compared with the overlay's
max-flow bound (`stemflow plan --json`, `bound_mbps`) for the same scaled scenario. Reported:
throughput raw and unscaled (/ F), the 1 KB request-response latency, the gain over direct
(emulated and simulated), multipath's share of the bound, and whether every message arrived in
order. The controller re-plans on measured link RTTs; the section says how often the publisher's
relay changed its next hop for the bulk session (from the relays' logs). A control run of the Table
I row with the relays of the two end regions only (`--two-relays`, the paper's own deployment,
where `shortest` has no other path; no relay runs in us-west1 there, so its controller is beside
every relay) is reported beside it.

Session set-up: the Table I row runs `--runs` times (default 3), and for each run the section
gives the 1 KB request-response latency emulated and simulated, and whether they agree within
±5% + 2 ms (issue 12), with the machine's load average before and after the run (the machine is
shared: its load is other people's work as much as ours). Run as root:

    sudo .venv/bin/python benchmarks/table1_emu.py [--rate-scale 0.5] [--size-scale 0.25] \
        [--multipath-rate-scale 0.1] [--two-relays] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from docpage import write_section

from stemflow.results import read_results

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Table I in emulation"
SCENARIO = ROOT / "scenarios" / "table1-us-east-asia-east.yaml"
STRATEGIES = ("direct", "shortest")
"""The Table I row: direct TCP and the paper's Stemflow."""
MULTIPATH = "multipath"
BULK, MESSAGE = "bulk-1GB", "msg-1KB"
RR_TOLERANCE_REL, RR_TOLERANCE_MS = 0.05, 2.0
"""Issue 12: emulated and simulated request-response latency agree within ±5% + 2 ms."""


def run(argv: list[str]) -> subprocess.CompletedProcess:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, capture_output=True, text=True)


def value(df, strategy: str, session: str, metric: str) -> float:
    rows = df[(df.strategy == strategy) & (df.session == session) & (df.metric == metric)]
    return float(rows["value"].median()) if len(rows) else float("nan")


def two_relay_scenario(out: Path) -> Path:
    """The Table I scenario with the relays of the two end regions only (data paths made absolute)."""
    d = yaml.safe_load(SCENARIO.read_text())
    ends = {c["datacenter"] for c in d["clients"]}
    d["datacenters"] = [dc for dc in d["datacenters"] if dc["name"] in ends]
    d["name"] += "-two-relays"
    d.pop("controller", None)  # its datacenter has no relay here
    for key in ("rtt_csv", "bandwidth_csv"):
        if key in d["mesh"]:
            d["mesh"][key] = str((SCENARIO.parent / d["mesh"][key]).resolve())
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scenario.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def next_hop_changes(emu_dir: Path, strategy: str, relay: str) -> list[list[str]]:
    """The publisher's relay's successive non-empty next-hop sets, as its log records them."""
    log = emu_dir / "logs" / strategy / f"relay-{relay}.out"
    seq: list[list[str]] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        m = re.search(r"next hops \[(.*)\]", line)
        hops = [h.strip(" '") for h in m.group(1).split(",") if h.strip()] if m else []
        if hops and (not seq or seq[-1] != hops):
            seq.append(hops)
    return seq


def measure(out: Path, f: float, s: float, chosen: tuple[str, ...] = STRATEGIES,
            scenario: Path = SCENARIO) -> dict:
    emu_dir, sim_dir = out / "emu", out / "sim"
    load_before = os.getloadavg()[0]
    strategies = [a for st in chosen for a in ("--strategy", st)]
    emu = run([sys.executable, "-m", "stemflow.emu", str(scenario), "--rate-scale", repr(f),
               "--size-scale", repr(s), "--out", str(emu_dir), *strategies])
    if not (emu_dir / "results.csv").exists():
        raise SystemExit(f"emulation failed:\n{emu.stderr[-3000:]}")
    sim = run([sys.executable, "-m", "stemflow.sim", str(emu_dir / "scenario-emulated.yaml"),
               "--strategy", *chosen, "--out", str(sim_dir), "--no-plots", "--quiet"])
    if sim.returncode != 0:
        raise SystemExit(f"simulation failed:\n{sim.stderr[-3000:]}")
    plan = run([sys.executable, "-m", "stemflow.cli", "plan", str(emu_dir / "scenario-emulated.yaml"),
                "--strategy", chosen[-1], "--json"])
    if plan.returncode != 0:
        raise SystemExit(f"plan failed:\n{plan.stderr[-3000:]}")
    e, m = read_results(emu_dir), read_results(sim_dir)
    load = (load_before, os.getloadavg()[0])
    manifest = json.loads((emu_dir / "manifest.json").read_text())
    src = yaml.safe_load(scenario.read_text())["clients"][0]["datacenter"]
    return {"emu": e, "sim": m, "manifest": manifest, "problems": emu.stderr.strip(), "load": load,
            "bound": json.loads(plan.stdout)["bound_mbps"][BULK],
            "hops": {st: next_hop_changes(emu_dir, st, src) for st in chosen if st != "direct"}}


def _lost(manifest: dict) -> list[dict]:
    return [c for c in manifest["delivery"]
            if c["received"] != c["expected"] or not c["in_order"] or c["duplicates"]]


def _rows(r: dict, f: float, chosen: tuple[str, ...], suffix: str = "") -> list[str]:
    e, m = r["emu"], r["sim"]
    rows = []
    for st in chosen:
        te, tm = value(e, st, BULK, "throughput_mbps"), value(m, st, BULK, "throughput_mbps")
        rows.append(f"| {st}{suffix} | {f:g} | {te:.1f} | {te / f:.1f} | {tm:.1f} | {tm / f:.1f} | "
                    f"{value(e, st, MESSAGE, 'rr_latency_ms'):.1f} | "
                    f"{value(m, st, MESSAGE, 'rr_latency_ms'):.1f} |")
    return rows


def _gain(r: dict) -> tuple[float, float]:
    g = [value(r[w], "shortest", BULK, "throughput_mbps") / value(r[w], "direct", BULK, "throughput_mbps")
         for w in ("emu", "sim")]
    return g[0], g[1]


def _verdict(r: dict, st: str, met: bool) -> str:
    """'met'/'not met', unless the strategy's run failed the delivery check (then no verdict)."""
    if any(c["strategy"] == st for c in _lost(r["manifest"])):
        return "no verdict: this run failed the delivery check"
    return "met" if met else "not met"


def _path_note(r: dict, st: str) -> str:
    seq = r["hops"].get(st, [])
    if len(seq) <= 1:
        return f"us-east1's relay kept its next hops for `{st}` ({', '.join(seq[0]) if seq else 'none'})."
    return (f"us-east1's relay changed its next hop for `{st}` {len(seq) - 1} times during the run "
            f"({' -> '.join('+'.join(h) for h in seq)}; the controller re-plans when a link's measured "
            "RTT moves by more than 20%).")


def rr_agrees(emu_ms: float, sim_ms: float) -> bool:
    return abs(emu_ms - sim_ms) <= RR_TOLERANCE_REL * sim_ms + RR_TOLERANCE_MS


def set_up_lines(runs: list[dict]) -> list[str]:
    """Per run of the Table I row: the 1 KB request-response latency, emulated and simulated."""
    lines = ["", "Session set-up (issue 12): the 1 KB request-response latency of each run of the "
             "Table I row, emulated and simulated on the scenario file that run's emulator wrote; "
             f"target: within ±{RR_TOLERANCE_REL:.0%} + {RR_TOLERANCE_MS:g} ms. The controller runs "
             "in us-west1 (64 ms from us-east1, 120 ms from asia-east1), in both drivers, and "
             "no decision time is charged. Load average (1 min) of the 2 shared cores before and "
             "after each run: the machine is shared, and the load is mostly other people's work.",
             "",
             "Why emulated runs once took 380 ms and once 741 ms: the orchestrator started the "
             "sessions a fixed 3 s after the relays, and how long the controller and relays take "
             "to start depends on the machine's load. Started late, the controller held the "
             "session's first table in its 1 s start-up grace and the relays dialled their peers "
             "only after that table, so the first frame also waited for a TCP handshake over the "
             "182.5 ms hop, each way. Measured once with the code before the fix, by starting "
             "the controller's command 5, 6 and 7 s late: 406, 886 and 4636 ms. The emulator now "
             "waits until the controller reports every relay registered with all its "
             "connections to every peer measured (`stemflow.emu.overlay_ready`).", "",
             "| run | strategy | emu RR (ms) | sim RR (ms) | emu - sim (ms) | tolerance (ms) | "
             "agree | load before / after |", "|---:|---|---:|---:|---:|---:|---|---|"]
    for i, r in enumerate(runs, 1):
        for st in STRATEGIES:
            em = value(r["emu"], st, MESSAGE, "rr_latency_ms")
            sm = value(r["sim"], st, MESSAGE, "rr_latency_ms")
            tol = RR_TOLERANCE_REL * sm + RR_TOLERANCE_MS
            lines.append(f"| {i} | {st} | {em:.1f} | {sm:.1f} | {em - sm:+.1f} | {tol:.1f} | "
                         f"{'yes' if rr_agrees(em, sm) else 'no'} | {r['load'][0]:.1f} / "
                         f"{r['load'][1]:.1f} |")
    return lines


def section(r: dict, f: float, s: float, mp: dict | None = None, f_mp: float | None = None,
            ctl: dict | None = None, s_mp: float | None = None,
            runs: list[dict] | None = None) -> str:
    e, m, manifest = r["emu"], r["sim"], r["manifest"]
    t = {w: {st: value(w_df, st, BULK, "throughput_mbps") for st in STRATEGIES}
         for w, w_df in (("emu", e), ("sim", m))}
    gain = dict(zip(("emu", "sim"), _gain(r), strict=True))
    ratio = gain["emu"] / gain["sim"]
    plan = value(m, "shortest", BULK, "planned_rate_mbps")
    lines = [
        SECTION, "",
        f"`benchmarks/table1_emu.py`, {time.strftime('%Y-%m-%d')}, {platform.node()} "
        f"({os.cpu_count()} cores, kernel {platform.release()}, link backend "
        f"{manifest['link_backend']}): `scenarios/table1-us-east-asia-east.yaml` (relays in five GCP "
        f"regions) with every rate and the TCP window cap scaled by F and the 1 GB transfer "
        f"shortened to {s:g} GB; the simulator ran the scenario file the emulator wrote (same F and "
        "size). 'unscaled' = rate / F. Latency: one 1 KB request-response exchange (median). The "
        "table is the first run of the Table I row (all runs' latencies follow it). The "
        "Table I row is `direct` vs `shortest`, the paper's Stemflow (one overlay hop, P = 3 "
        "persistent connections); `multipath`, which also relays through us-central1, us-west1 and "
        "asia-northeast1, plans about 8x shortest's rate and runs on its own at a smaller F to stay "
        "within the ~1 Gbit/s the two cores carry"
        + (f", with the bulk transfer at {s_mp:g} GB." if mp is not None and s_mp is not None else "."), "",
        "| strategy | F | emu throughput (Mbit/s) | emu unscaled | sim throughput (Mbit/s) | "
        "sim unscaled | emu 1 KB RR (ms) | sim 1 KB RR (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *_rows(r, f, STRATEGIES),
    ]
    if mp is not None:
        lines += _rows(mp, f_mp, (MULTIPATH,))
    if ctl is not None:
        lines += _rows(ctl, f, STRATEGIES, " (two relays)")
    lines += [
        "",
        f"Table I gain (shortest over direct, F = {f:g}): emulated {gain['emu']:.2f}x, simulated "
        f"{gain['sim']:.2f}x; emulated / simulated = {ratio:.2f} (issue 5 target: within ±15%, "
        f"{_verdict(r, 'shortest', abs(ratio - 1) <= 0.15)}). Shortest's emulated throughput is "
        f"{t['emu']['shortest'] / plan:.0%} of the plan's rate for its one path ({plan:.1f} Mbit/s; "
        f"the overlay's max-flow bound at this F is {r['bound']:.1f} Mbit/s). " + _path_note(r, "shortest"),
    ]
    if ctl is not None:
        ge, gs = _gain(ctl)
        lines += [
            "",
            f"Control, the same row with relays in the two end regions only (the paper's deployment: "
            f"`shortest` has no other path; '(two relays)' rows): emulated {ge:.2f}x, simulated "
            f"{gs:.2f}x; emulated / simulated = {ge / gs:.2f} "
            f"(±15%: {_verdict(ctl, 'shortest', abs(ge / gs - 1) <= 0.15)}). " + _path_note(ctl, "shortest"),
        ]
    if mp is not None:
        te = value(mp["emu"], MULTIPATH, BULK, "throughput_mbps")
        tm = value(mp["sim"], MULTIPATH, BULK, "throughput_mbps")
        share = te / mp["bound"]
        lines += [
            "",
            f"Multipath (F = {f_mp:g}): emulated {te:.1f} Mbit/s = {share:.0%} of the overlay's "
            f"max-flow bound for the session ({mp['bound']:.1f} Mbit/s; issue 5 target: >= 90%, "
            f"{_verdict(mp, MULTIPATH, share >= 0.9)}); the simulator gives {tm:.1f} Mbit/s "
            f"({tm / mp['bound']:.0%} of the bound) on the same scaled scenario, the rest being "
            f"set-up and slow start on a transfer of {s_mp if s_mp is not None else s:g} GB; "
            "emulated / simulated = "
            f"{te / tm:.2f}. " + _path_note(mp, MULTIPATH),
        ]
    lines += set_up_lines(runs or [r])
    extra = [(f" (run {i})", x) for i, x in enumerate(runs or [], 1) if x is not r]
    lost = [(label, c) for label, run_ in (("", r), (f" (F = {f_mp:g})", mp), (" (two relays)", ctl),
                                            *extra)
            if run_ is not None for c in _lost(run_["manifest"])]
    if lost:
        worst = ", ".join(f"{c['strategy']}{label} {c['session']}: {c['received']}/{c['expected']} "
                          f"messages, in order {c['in_order']}" for label, c in lost)
        lines += ["", f"Delivery problems in this run (throughput counts delivered bytes only): "
                      f"{worst}."]
    else:
        lines += ["", "Every message arrived once and in order."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate-scale", type=float, default=0.5)
    ap.add_argument("--size-scale", type=float, default=0.25)
    ap.add_argument("--multipath-rate-scale", type=float, default=0.1,
                    help="F for the multipath run (0: leave multipath out)")
    ap.add_argument("--multipath-size-scale", type=float, default=1.0,
                    help="size scale for the multipath run (at F = 0.1, 1 GB lasts about 20 s)")
    ap.add_argument("--two-relays", action="store_true",
                    help="also run the Table I row with the relays of the two end regions only")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "table1-emu-bench")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of the Table I row, each compared with the simulator (set-up latency)")
    a = ap.parse_args()
    runs = [measure(a.out / f"run{i}", a.rate_scale, a.size_scale) for i in range(1, a.runs + 1)]
    r = runs[0]
    mp = None
    if a.multipath_rate_scale > 0:
        mp = measure(a.out / MULTIPATH, a.multipath_rate_scale, a.multipath_size_scale, (MULTIPATH,))
    ctl = None
    if a.two_relays:
        ctl_out = a.out / "two-relays"
        ctl = measure(ctl_out, a.rate_scale, a.size_scale, scenario=two_relay_scenario(ctl_out))
    text = section(r, a.rate_scale, a.size_scale, mp, a.multipath_rate_scale, ctl, a.multipath_size_scale,
                   runs)
    print(text)
    if not a.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
