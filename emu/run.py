"""One emulated run of a scenario: per strategy, start the processes, run the workload, measure.

Owns the order of a run on an already built `Emulation`: for `direct`, real TCP transfers
between client hosts over their Internet links; for every other strategy, the controller in its
host, a relay in each datacenter host, a wait until every relay has registered and connected to
every other (`stemflow.emu.overlay_ready`), then the sessions' publishers and subscribers
(`stemflow.emu.workload`) in the client hosts. It turns the processes' JSON reports into rows of
the one results schema (`stemflow.results`, mode "emu"; which rows is each workload kind's,
`stemflow.workloads`) and writes `results.csv`, the unscaled copy `results-unscaled.csv` (rates
divided by the rate scale), and `manifest.json`.

The orchestrator talks to its processes only through pipes and files: nothing here opens a
socket, so no packet ever leaves the emulated hosts' namespaces. Hosts, links and teardown are
`stemflow.emu.topology`'s and `stemflow.emu.cleanup`'s.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from stemflow.emu.credentials import RunCredentials, run_credentials
from stemflow.emu.faults import FaultInjector
from stemflow.emu.measure import READY_TIMEOUT_S, await_line
from stemflow.emu.overlay_ready import TIMEOUT_S as READY_WAIT_S
from stemflow.emu.topology import Emulation, TopologyError

from stemflow.results import Row, metric_row, versions, write_manifest, write_results
from stemflow.routing.demand import demands_from_scenario
from stemflow.scenario import Scenario, Session, parse_scenario
from stemflow.workloads.registry import kind_of, subscriber_label

WORKLOAD = [sys.executable, "-m", "stemflow.emu.workload"]
STEMFLOW = [sys.executable, "-m", "stemflow.cli"]
CONTROLLER_PORT = 7000
RELAY_PORT = 7100
DIRECT_PORT_BASE = 6000
START_MARGIN_S = 1.0
"""Publishers start together this long after the last of them is ready, so that the sessions'
`start_s` offsets are kept relative to one common instant."""
CONTROLLER_STATUS_PORT = 7001
OVERLAY_READY = [sys.executable, "-m", "stemflow.emu.overlay_ready"]
"""Run in the controller's host after the relays start: returns once every relay has registered
and connected to every other (`stemflow.emu.overlay_ready`), so that no session's set-up waits
for the overlay's own start-up, whatever the machine's load."""
OVERLAY_READY_TIMEOUT_S = READY_WAIT_S + 10.0
"""The waiter's own timeout, and its Python start-up."""
SESSION_TIMEOUT_S = 1800.0
DIRECT_PERSISTENT_PARAMETER = "direct_persistent"
"""Scenario parameter (the simulator's too): 0 = direct TCP opens its connection when the session
starts, so the handshake counts; 1 (default) = the connection exists beforehand."""
RATE_METRICS = ("throughput_mbps", "planned_rate_mbps", "bound_mbps", "source_egress_mbps")
EGRESS_METRIC = "source_egress_mbps"
"""A workload kind that names this metric (video) is given, per session, the bytes its source
datacenter sent to the others while the sessions ran, over the session's duration."""


class RunError(RuntimeError):
    pass


@dataclass
class Options:
    out: Path
    strategies: list[str]
    rate_scale: float = 1.0
    size_scale: float = 1.0
    serial: bool = False
    link_backend: str = ""


@dataclass
class SessionReports:
    session: Session
    pub: dict[str, Any]
    subs: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The scenario as emulated


def scaled_scenario(s: Scenario, factor: float, size_scale: float = 1.0) -> Scenario:
    """`s` as emulated: every bandwidth (a degraded link's too) and the TCP window cap times
    `factor`, every workload as its kind scales it (`WorkloadKind.scaled`: a stream's bitrate
    times `factor`, bulk sizes times `size_scale`). Written next to the results, so that the
    simulator can run the very same."""
    data = s.model_dump(mode="json", exclude={"source", "base_dir"})
    data.pop("mesh", None)  # links are already expanded
    for x, session in zip(data["sessions"], s.sessions, strict=True):
        w = session.workload
        x["workload"] = kind_of(w).scaled(w, factor, size_scale).model_dump(mode="json")
    for ln in data["links"]:
        ln["bandwidth_mbps"] *= factor
    for c in data["clients"]:
        c["access"]["bandwidth_mbps"] *= factor
    for p in data["internet"]:
        p["bandwidth_mbps"] *= factor
    data["tcp"]["rwnd_bytes"] *= factor
    for f in data.get("faults", []):
        if f.get("bandwidth_mbps") is not None:  # a link degraded to a rate
            f["bandwidth_mbps"] *= factor
    return parse_scenario(data, source=f"{s.source} (rates x{factor:g}, bulk x{size_scale:g})",
                          base_dir=s.base_dir)


def write_scenario(s: Scenario, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = s.model_dump(mode="json", exclude={"source", "base_dir"})
    data.pop("mesh", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Processes


def _report(proc: subprocess.Popen, timeout: float, what: str, stdin: str | None = None
            ) -> dict[str, Any]:
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RunError(f"{what}: no report within {timeout:.0f} s") from None
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RunError(f"{what} failed (exit {proc.returncode}): {err.strip()[-2000:]}")
    return json.loads(lines[-1])


def run_sessions(emu: Emulation, sessions: list[Session], opts: Options,
                 transport: dict[str, list[str]],
                 caps: dict[str, float] | None = None,
                 on_start: Callable[[float], None] | None = None) -> list[SessionReports]:
    """Start every session's subscribers, then its publisher at its `start_s`; collect reports.

    `caps`: per session, the rate its publisher states to the overlay (the demand's cap, as the
    simulator plans with it), so both drivers' controllers plan the same session.

    `transport[client]` holds the workload arguments that connect `client` (direct: --listen or
    --to; overlay: --relay), keyed also by f"{session}/{client}" for per-session ports.
    `on_start(t)`: told the instant (`time.monotonic()`) the sessions' `start_s` count from,
    once every publisher has connected (later than planned if one was slow to start).
    """
    groups = [[s] for s in sessions] if opts.serial else [sessions]
    out: list[SessionReports] = []
    for group in groups:
        waiting: list[tuple[Session, list[subprocess.Popen]]] = []
        for s in group:
            subs = []
            for name in s.subscribers:
                argv = [*WORKLOAD, "sub", "--session-json", s.model_dump_json(), "--name", name,
                        *transport.get(f"{s.id}/{name}", transport.get(name, []))]
                p = emu.popen(name, argv, what=f"subscriber {name} of {s.id}")
                await_line(p, "READY", READY_TIMEOUT_S, f"subscriber {name} of {s.id}")
                subs.append(p)
            waiting.append((s, subs))
        start_at = time.monotonic() + START_MARGIN_S
        started = []
        for s, subs in waiting:
            argv = [*WORKLOAD, "pub", "--session-json", s.model_dump_json(), "--name",
                    s.publisher, "--linger",
                    "--start-at", repr(start_at + s.start_s),
                    *transport.get(f"{s.id}/{s.publisher}", transport.get(s.publisher, []))]
            cap = (caps or {}).get(s.id, math.inf)
            if math.isfinite(cap):
                argv += ["--max-rate-mbps", repr(cap)]
            p = emu.popen(s.publisher, argv, what=f"publisher {s.publisher} of {s.id}",
                          stdin=subprocess.PIPE)
            started.append((s, p, subs))
        if on_start:  # a publisher slow to start (a loaded machine) starts late: count from then
            for s, pub, _ in started:
                await_line(pub, "READY", READY_TIMEOUT_S, f"publisher {s.publisher} of {s.id}")
            on_start(max(start_at, time.monotonic()))
        for s, pub, subs in started:
            sub_reports = [_report(p, SESSION_TIMEOUT_S, f"subscriber of {s.id}") for p in subs]
            # every subscriber is done: the publisher may leave
            rep = SessionReports(s, _report(pub, SESSION_TIMEOUT_S, f"publisher of {s.id}",
                                            stdin="CLOSE\n"))
            rep.subs = sub_reports
            out.append(rep)
    return out


def direct_transport(emu: Emulation, sessions: list[Session], cc: str, persistent: bool
                     ) -> dict[str, list[str]]:
    """Per session: each subscriber listens on its own port; the publisher dials them all, at
    the session's start unless connections are `persistent` (opened beforehand)."""
    t: dict[str, list[str]] = {}
    tcp = ["--cc", cc]
    for i, s in enumerate(sessions):
        port = DIRECT_PORT_BASE + i
        for name in s.subscribers:
            t[f"{s.id}/{name}"] = ["--listen", f"{emu.address(name)}:{port}", *tcp]
        to = ",".join(f"{emu.address(n)}:{port}" for n in s.subscribers)
        t[f"{s.id}/{s.publisher}"] = ["--to", to, *tcp,
                                      *([] if persistent else ["--connect-at-start"])]
    return t


@dataclass
class Overlay:
    """The overlay's processes by host label (`controller`, each relay's datacenter), and how to
    start each again: what `stemflow.emu.faults` kills by PID and restarts."""

    emu: Emulation
    log_dir: Path
    argv: dict[str, list[str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    transport: dict[str, list[str]] = field(default_factory=dict)
    """Each client's workload arguments (its --relay)."""

    def start(self, label: str) -> subprocess.Popen:
        """Start (or restart) the process of `label`; its output is appended to its log."""
        log = self.log_dir / ("controller.out" if label == "controller" else f"relay-{label}.out")
        what = "controller" if label == "controller" else f"relay {label}"
        p = self.emu.popen(label, self.argv[label], what=what,
                           stdout=log.open("a"), stderr=subprocess.STDOUT)
        self.procs[label] = p
        return p

    def kill(self, label: str) -> None:
        """SIGKILL the process of `label` by its PID, and reap it."""
        p = self.procs[label]
        if p.poll() is None:
            p.kill()
            p.wait()


STATUS_EVERY_S = 5.0
"""How often the controller's status (plan, rates, every relay's counters) is recorded while
sessions run: often enough to see a re-plan or a stall, one small process per sample."""


class StatusRecorder:
    """Appends the controller's status, one JSON line per sample, to `controller-status.jsonl`
    in the strategy's log directory: what the plan gave each session and what the relays
    counted, to explain an emulated rate after the run (the controller's end-of-run status
    has no sessions left)."""

    def __init__(self, emu: Emulation, status_addr: str, path: Path,
                 status_args: Sequence[str] = ()):
        self.emu, self.status_addr, self.path = emu, status_addr, path
        self.status_args = list(status_args)  # the controller's status token, if it has one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-recorder", daemon=True)

    def __enter__(self) -> StatusRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=STATUS_EVERY_S + 5)

    def _loop(self) -> None:
        t0 = time.monotonic()
        with self.path.open("w") as f:
            while not self._stop.wait(STATUS_EVERY_S):
                try:
                    out = self.emu.run("controller", [*OVERLAY_READY, "--dump", "--status",
                                                      self.status_addr, *self.status_args],
                                       timeout=STATUS_EVERY_S)
                except TopologyError:
                    continue  # a sample missed (the controller stopped by a fault): the next one
                f.write(f'{{"t_s":{time.monotonic() - t0:.1f},"status":{out.strip()}}}\n')
                f.flush()


@contextmanager
def overlay(emu: Emulation, scenario_file: Path, strategy: str, parallel: int, cc: str,
            creds: RunCredentials) -> Iterator[Overlay]:
    """The controller and one relay per datacenter, running with the run's credentials; yields
    them with each client's --relay and credential flags (`Overlay.transport`)."""
    ctl_addr = f"{emu.address('controller')}:{CONTROLLER_PORT}"
    status_addr = f"{emu.address('controller')}:{CONTROLLER_STATUS_PORT}"
    log_dir = scenario_file.parent / "logs" / strategy
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in ["controller.out", *(f"relay-{h.label}.out" for h in emu.plan.hosts if h.role == "relay")]:
        (log_dir / name).write_text("")
    ov = Overlay(emu, log_dir)
    ov.argv["controller"] = [*STEMFLOW, "controller", "--listen", ctl_addr, "--strategy", strategy,
                             "--scenario", str(scenario_file), "--status", status_addr,
                             *creds.controller_args()]
    ov.start("controller")
    procs = ov.procs
    try:
        for dc in emu.plan.hosts:
            if dc.role != "relay":
                continue
            ov.argv[dc.label] = [*STEMFLOW, "relay", "--dc", dc.label, "--listen",
                                 f"{dc.address}:{RELAY_PORT}", "--controller", ctl_addr,
                                 "--parallel", str(parallel), "--cc", cc, *creds.relay_args()]
            ov.start(dc.label)
        label = {h.name: h.label for h in emu.plan.hosts}
        relays = [h.label for h in emu.plan.hosts if h.role == "relay"]
        links = [f"{label[ln.a]}:{label[ln.b]}" for ln in emu.plan.links_of("overlay")]
        try:
            emu.run("controller", [*OVERLAY_READY, "--status", status_addr, "--relays",
                                   ",".join(relays), "--links", ",".join(links),
                                   "--parallel", str(parallel), *creds.status_args()],
                    timeout=OVERLAY_READY_TIMEOUT_S)
        except TopologyError as e:
            raise RunError(f"the overlay did not come up (logs in {log_dir}): {e}") from None
        dead = [p.args for p in procs.values() if p.poll() is not None]
        if dead:
            raise RunError(f"overlay processes exited early (logs in {log_dir}): {dead}")
        ov.transport = {c.label: ["--relay", f"{emu.address(c.site)}:{RELAY_PORT}", "--cc", cc,
                                  *creds.client_args(c.label)]
                        for c in emu.plan.hosts if c.role == "client"}
        with StatusRecorder(emu, status_addr, log_dir / "controller-status.jsonl",
                            creds.status_args()):
            yield ov
    finally:
        for p in reversed(list(procs.values())):
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------------------------
# Rows


def rows_for(reports: list[SessionReports], run_id: str, scenario: str, strategy: str
             ) -> list[Row]:
    """Each session's rows as its workload kind reads them from the reports (`emu_rows`),
    labelled per subscriber as the simulator labels them, so that the two modes' rows line up."""
    rows: list[Row] = []
    for r in reports:
        s, w = r.session, r.session.workload
        kind = kind_of(w)
        for x in kind.emu_rows(s, w, r.pub, r.subs):
            kind.check_metric(x.metric)
            rows.append(metric_row(run_id, "emu", scenario, strategy, subscriber_label(s, x.subscriber),
                                   kind.type, x.metric, x.value, x.t_s))
    return rows


def unscaled(rows: list[Row], rate_scale: float) -> list[Row]:
    """Rates divided by the rate scale: what the unscaled scenario would carry."""
    return [replace(r, value=r.value / rate_scale) if r.metric in RATE_METRICS else r
            for r in rows]


def delivery(reports: list[SessionReports], strategy: str) -> list[dict[str, Any]]:
    """Per subscriber: what arrived, in order or not; per request-response publisher: answers."""
    rr = [{"strategy": strategy, "session": r.session.id, "subscriber": "(replies)",
           "expected": r.pub["messages"], "received": r.pub["messages"] - r.pub["unanswered"],
           "in_order": True, "duplicates": 0, "missing_first": []}
          for r in reports if r.pub.get("unanswered")]
    return rr + [{"strategy": strategy, "session": r.session.id, "subscriber": sub["subscriber"],
             "expected": sub["expected"], "received": sub["received"],
             "in_order": sub["in_order"], "duplicates": sub["duplicates"],
             "missing_first": sub.get("missing_first", [])}
            for r in reports for sub in r.subs]


# ---------------------------------------------------------------------------------------------
# The run


def egress_sessions(sessions: list[Session]) -> dict[str, Session]:
    """Per source datacenter, the one session whose kind reports the source's egress and which
    is the only session publishing from there (bytes on a link cannot be told apart by session)."""
    by_site: dict[str, list[Session]] = {}
    for s in sessions:
        by_site.setdefault(s.publisher, []).append(s)
    return {pub: ss[0] for pub, ss in by_site.items()
            if len(ss) == 1 and EGRESS_METRIC in kind_of(ss[0].workload).metrics
            and getattr(ss[0].workload, "duration_s", None)}


def egress_rows(emu: Emulation, scenario: Scenario, strategy: str, before: dict[str, int | None],
                ) -> list[Row]:
    """`source_egress_mbps` of each session `egress_sessions` picks: the bytes out of its
    publisher's datacenter since `before` (`Emulation.egress_bytes`), over its duration."""
    rows = []
    for pub, s in egress_sessions(scenario.sessions).items():
        site = emu.plan.host(pub).site
        start, end = before.get(pub), emu.egress_bytes(site)
        if start is None or end is None:
            continue
        mbps = (end - start) * 8 / 1e6 / s.workload.duration_s
        rows.append(metric_row(emu.plan.run_id, "emu", scenario.name, strategy, s.id,
                               kind_of(s.workload).type, EGRESS_METRIC, mbps, 0.0))
    return rows


def egress_counts(emu: Emulation, sessions: list[Session]) -> dict[str, int | None]:
    return {pub: emu.egress_bytes(emu.plan.host(pub).site) for pub in egress_sessions(sessions)}


def run_scenario(emu: Emulation, scenario: Scenario, opts: Options) -> dict[str, Any]:
    """Run every strategy on the built emulation; write results and manifest; return a summary."""
    run_id = emu.plan.run_id
    scaled = scaled_scenario(scenario, opts.rate_scale, opts.size_scale)
    scenario_file = write_scenario(scaled, opts.out / "scenario-emulated.yaml")
    rows: list[Row] = []
    checks: list[dict[str, Any]] = []
    relays = {h.label: h.address for h in emu.plan.hosts if h.role == "relay"}
    clients = [h.label for h in emu.plan.hosts if h.role == "client"]
    with run_credentials(scaled, relays, clients) as creds:
        for strategy in opts.strategies:
            if strategy == "direct":
                persistent = bool(scaled.parameters.get(DIRECT_PERSISTENT_PARAMETER, 1))
                t = direct_transport(emu, scaled.sessions, str(scaled.tcp.congestion_control),
                                     persistent)
                before = egress_counts(emu, scaled.sessions)
                reports = run_sessions(emu, scaled.sessions, opts, t)
                rows += egress_rows(emu, scaled, strategy, before)
            else:
                caps = {d.session: d.max_rate_mbps for d in demands_from_scenario(scaled)}
                with overlay(emu, scenario_file, strategy, scaled.relay.parallel,
                             str(scaled.tcp.congestion_control), creds) as ov:
                    injector = FaultInjector(ov, scaled) if scaled.faults else None
                    before = egress_counts(emu, scaled.sessions)
                    reports = run_sessions(emu, scaled.sessions, opts, ov.transport, caps,
                                           on_start=injector.start if injector else None)
                    rows += egress_rows(emu, scaled, strategy, before)
                    if injector:
                        injector.finish()
                        if injector.errors:
                            raise RunError(f"{strategy}: faults not played: {'; '.join(injector.errors)}")
                if injector:
                    rows += [metric_row(run_id, "emu", scenario.name, strategy, session, workload, metric,
                                        value, t) for session, workload, metric, value, t in
                             injector.rows(reports)]
            rows += rows_for(reports, run_id, scenario.name, strategy)
            checks += delivery(reports, strategy)
    write_results(opts.out / "results.csv", rows)
    write_results(opts.out / "results-unscaled.csv", unscaled(rows, opts.rate_scale))
    manifest = {
        "run_id": run_id, "mode": "emu", "scenario": scenario.name,
        "scenario_hash": scenario.digest(), "seed": scenario.seed,
        "strategies": opts.strategies, "link_backend": opts.link_backend,
        "rate_scale": opts.rate_scale, "size_scale": opts.size_scale,
        "sessions_serial": opts.serial, "kernel": platform.release(),
        "versions": versions(), "congestion_control": str(scenario.tcp.congestion_control),
        "window_cap_bytes": int(scaled.tcp.rwnd_bytes), "parallel": scenario.relay.parallel,
        "host_default_congestion_control": sorted(set(emu.host_default_cc.values())),
        "security": scenario.security.model_dump(),
        "delivery": checks,
        "reference": scenario.reference.model_dump() if scenario.reference else None,
    }
    write_manifest(opts.out / "manifest.json", manifest)
    return manifest


def check_delivery(manifest: dict[str, Any]) -> list[str]:
    """Sessions that lost, duplicated or reordered messages, in words."""
    bad = []
    for c in manifest["delivery"]:
        if c["received"] != c["expected"] or not c["in_order"] or c["duplicates"]:
            bad.append(f"{c['strategy']} {c['session']} -> {c['subscriber']}: "
                       f"{c['received']}/{c['expected']} in order={c['in_order']} "
                       f"duplicates={c['duplicates']} missing (first): {c['missing_first']}")
    return bad

