"""One scenario through the simulator, once per strategy: build the world, run it, read it out.

Owns a run's assembly — the SimPy environment, the fluid network, one relay per datacenter, the
sans-IO controller with the strategy, a process per session — and the conversion of what the
run measured into rows of the results schema. Results rows hold only simulated quantities, so a
scenario and a seed give byte-identical `results.csv`; the controller's wall-clock solve times
(`solve_s`) are kept apart, in `timings`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy
from stemflow.sim.faults import FaultInjector
from stemflow.sim.model import ControlPlane, Network, Relay, World
from stemflow.sim.params import ModelParameters
from stemflow.sim.transfers import Fluid
from stemflow.sim.workloads import session_process

from stemflow.controller import HEARTBEAT_TIMEOUT_S, Controller
from stemflow.controller_site import controller_rtts_ms
from stemflow.faults import outcome_values
from stemflow.network import NetworkState
from stemflow.results import Row, metric_row
from stemflow.routing import RoutingOptions, demands_from_scenario
from stemflow.scenario import Scenario, ScenarioError

MODE = "sim"
DIRECT = "direct"
"""The strategy that sends over the Internet, not through relays (the paper's baseline)."""
STUCK_AFTER_FAULTS_S = 600.0
"""A run with faults stops this long after its last fault event or session start: relays beat
for ever, so a session no plan can route would otherwise keep the run going."""


@dataclass(frozen=True)
class StrategyRun:
    """What one strategy's run produced."""

    strategy: str
    rows: list[Row]
    timings: list[Row]
    sim_end_s: float
    fluid_events: int
    wall_s: float
    unfinished: list[str]
    """Sessions that never completed (a plan that gave them no route): they have no results."""
    configs: dict[str, int]
    """How many of the controller's plans each routing configuration made ("exact", "fast")."""


def run_id(scenario: Scenario, seed: int, strategies: Sequence[str]) -> str:
    """A run's id from what determines it (scenario content, seed, strategies): reproducible."""
    blob = f"{scenario.digest()}|{seed}|{','.join(strategies)}".encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def check_simulable(scenario: Scenario) -> None:
    """Refuse what only the emulation runs: TLS and token checks cost CPU per byte and per
    connection, and the fluid model has no CPU to charge them to (docs/security.md says why it
    does not make one up)."""
    on = [name for name in ("tls", "tokens") if getattr(scenario.security, name)]
    if on:
        raise ScenarioError(scenario.source, "security",
                            f"{' and '.join(on)} switched on, which only the emulation runs (the "
                            "simulator has no CPU model to charge TLS or token checks to); run "
                            "it with 'stemflow emu', or simulate without: "
                            + " ".join(f"--set security.{name}=false" for name in on))


def run_strategy(scenario: Scenario, strategy: str, seed: int, rid: str,
                 on_session_done: Callable[[], None] | None = None) -> StrategyRun:
    """Simulate every session of `scenario` with the controller running `strategy`."""
    check_simulable(scenario)
    wall0 = time.perf_counter()
    env = simpy.Environment()
    net = NetworkState.from_scenario(scenario)
    params = ModelParameters.from_scenario(scenario)
    fluid = Fluid(env)
    network = Network(env, fluid, net, params)
    relays = {dc: Relay(dc) for dc in net.datacenters}
    holder: list[World] = []
    faulty = bool(scenario.faults) and strategy != DIRECT  # else relays need not beat nor report

    def new_controller() -> Controller:
        return Controller(net, strategy, RoutingOptions(fairness=scenario.routing.fairness),
                          heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S if faulty else math.inf)

    controller = new_controller()
    control = ControlPlane(env, controller, relays, controller_rtts_ms(net, scenario.controller.datacenter),
                           on_tables=lambda: holder[0].tables_changed())
    world = World(env, scenario, net, params, fluid, network, control, np.random.default_rng(seed))
    holder.append(world)
    control.join_all()
    injector = FaultInjector(world, new_controller) if faulty else None
    if injector:
        injector.start()
    demands = {d.session: d for d in demands_from_scenario(scenario, net)}
    direct = strategy == DIRECT

    def session(s):
        yield env.process(session_process(world, s, demands[s.id], direct))
        if on_session_done:
            on_session_done()

    procs = {s.id: env.process(session(s)) for s in scenario.sessions}
    done = env.all_of(list(procs.values()))
    if injector:  # relays beat for ever: a session stuck after the last fault ends the run later
        done = env.any_of([done, env.timeout(fault_horizon_s(scenario))])
    try:
        env.run(until=done)
    except RuntimeError as e:  # nothing left to happen: some session waits for a table that never comes
        if "No scheduled events left" not in str(e):
            raise
    stuck = [sid for sid, p in procs.items() if not p.triggered]
    configs = Counter(p.config.split(" (")[0] for p in control.plans if p.config)
    rows = _rows(world, strategy, rid) + (_fault_rows(world, injector, strategy, rid) if injector else [])
    return StrategyRun(strategy, rows, _timings(world, strategy, rid), env.now,
                       fluid.events, time.perf_counter() - wall0, stuck, dict(sorted(configs.items())))


def _rows(world: World, strategy: str, rid: str) -> list[Row]:
    name = world.scenario.name
    rows = [metric_row(rid, MODE, name, strategy, m.session, m.workload, m.metric, m.value, m.t_s)
            for m in world.measurements]
    fluid = world.fluid
    for edge, bundle in sorted(world.network.bundles.items()):
        r = bundle.resource
        if fluid.offered[r] > 0:
            rows.append(metric_row(rid, MODE, name, strategy, f"{edge[0]}->{edge[1]}", "",
                                   "link_utilization", float(fluid.carried[r] / fluid.offered[r])))
    if strategy != DIRECT:
        planned: dict[str, tuple[float, float]] = {}
        for p in world.control.plans:
            for sid, rate in p.planned_mbps.items():
                if sid not in planned and "/reply/" not in sid:
                    planned[sid] = (rate, p.at_s)
        for sid, (rate, at) in sorted(planned.items()):
            workload = world.scenario.session(sid).workload.type
            rows.append(metric_row(rid, MODE, name, strategy, sid, workload, "planned_rate_mbps", rate, at))
    rows.sort(key=lambda r: (r.session, r.workload, r.metric, r.t_s))
    return rows


def fault_horizon_s(scenario: Scenario) -> float:
    """When a run with faults gives up on sessions that have not finished: the last fault event
    plus `STUCK_AFTER_FAULTS_S`, or that long after the last session starts."""
    ends = [f.until_s if f.until_s is not None else f.at_s for f in scenario.faults]
    return max([*ends, *(s.start_s for s in scenario.sessions)]) + STUCK_AFTER_FAULTS_S


def _fault_rows(world: World, injector: FaultInjector, strategy: str, rid: str) -> list[Row]:
    """Per fault what it did, each session's sampled delivery rate, and bytes delivered."""
    name, s = world.scenario.name, world.scenario
    rows = [metric_row(rid, MODE, name, strategy, session, "", metric, value, t)
            for session, metric, value, t in outcome_values(s.faults, injector.outcomes())]
    for sid, samples in sorted(injector.samples.items()):
        workload = s.session(sid).workload.type
        rows += [metric_row(rid, MODE, name, strategy, sid, workload, "delivery_rate_mbps", r, t)
                 for t, r in samples]
    completed = {m.session for m in world.measurements if m.metric == "completion_s"}
    for x in s.sessions:
        size = getattr(x.workload, "size_bytes", None)
        if size is not None and x.id in completed:
            rows.append(metric_row(rid, MODE, name, strategy, x.id, x.workload.type, "delivered_bytes",
                                   injector.delivered_bytes(x.id, size), x.start_s))
    return rows


def _timings(world: World, strategy: str, rid: str) -> list[Row]:
    return [metric_row(rid, MODE, world.scenario.name, strategy, "", "", "solve_s", p.solve_s, p.at_s)
            for p in world.control.plans]
