"""The modelled overlay in SimPy: links carry fluid, relays forward by their tables, a controller decides.

Owns the simulated world of one run: the resources of the rate solver and what they stand for
(each client's access hop, each Internet path, each overlay hop's bundle of P persistent TCP
connections), the relays and their forwarding tables, and the control plane that carries events
to the sans-IO `stemflow.controller.Controller` and its tables back to the relays. Sessions (`sim.workloads`)
use this world; latency arithmetic lives in `sim.latency`, connection dynamics in
`sim.transport`, rates in `sim.fluid`, transfers in time in `sim.transfers`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import simpy
from stemflow.sim.params import ModelParameters
from stemflow.sim.routes import SessionRoute, session_route
from stemflow.sim.transfers import Fluid
from stemflow.sim.transport import ConnectionModel

from stemflow.controller import (
    Controller,
    Event,
    PlanComputed,
    PushTable,
    RelayJoined,
    interests_of,
    withdrawn,
)
from stemflow.network import Edge, LinkState, NetworkState
from stemflow.relay.core import RelayCore
from stemflow.routing.demand import Demand
from stemflow.routing.plan import RelayTable
from stemflow.scenario import Scenario

if TYPE_CHECKING:
    from stemflow.sim.workloads import OverlayFlow

# ---------------------------------------------------------------------------------------------
# The network: access hops, Internet paths, overlay hop bundles


@dataclass(eq=False)
class HopBundle:
    """P persistent TCP connections from one relay to a peer, shared by every session."""

    edge: Edge
    link: LinkState
    connections: ConnectionModel
    resource: int
    users: int = 0
    idle_since_s: float = -math.inf
    ramp: int = 0
    cap_mbps: float = 0.0
    warm: bool = False
    cuts: int = 0
    """Faults that cut this hop now (`sim.faults`): while any does, it carries nothing."""


class Network:
    """The links of the modelled world as solver resources, and how their capacity moves."""

    def __init__(self, env: simpy.Environment, fluid: Fluid, net: NetworkState, params: ModelParameters):
        self.env, self.fluid, self.net, self.params = env, fluid, net, params
        self.access_up: dict[str, int] = {}
        self.access_down: dict[str, int] = {}
        self.access: dict[str, ConnectionModel] = {}
        """Each client's one TCP connection to its relay, opened when it publishes or subscribes."""
        for name, site in sorted(net.clients.items()):
            self.access[name] = ConnectionModel.over(site.access, net.tcp, 1, params.initial_window_segments)
            self.access_up[name] = fluid.resource(site.access.bandwidth_mbps)
            self.access_down[name] = fluid.resource(site.access.bandwidth_mbps)
        self._internet: dict[frozenset[str], int] = {}
        self.bundles: dict[Edge, HopBundle] = {}
        for edge, link in sorted(net.links.items()):
            conns = ConnectionModel.over(link, net.tcp, net.parallel, params.initial_window_segments)
            bundle = HopBundle(edge, link, conns, fluid.resource(0.0))
            self.bundles[edge] = bundle
            self._set_bundle_cap(bundle, conns.slow_start()[0][1])

    def internet(self, a: str, b: str) -> int:
        """The resource of the Internet path between two clients (shared by direct transfers)."""
        key = frozenset((a, b))
        if key not in self._internet:
            self._internet[key] = self.fluid.resource(self.net.internet_path(a, b).bandwidth_mbps)
        return self._internet[key]

    def _set_bundle_cap(self, b: HopBundle, rate_mbps: float) -> None:
        b.cap_mbps = min(rate_mbps, b.connections.steady_mbps, b.link.bandwidth_mbps)
        self.fluid.set_capacity(b.resource, 0.0 if b.cuts else b.cap_mbps)

    def set_link(self, edge: Edge, link: LinkState) -> None:
        """The hop's path changed (a fault degrades or restores it): its connections now carry
        what the new path allows, from the rate they had."""
        b = self.bundles[edge]
        b.link = link
        b.connections = ConnectionModel.over(link, self.net.tcp, self.net.parallel,
                                             self.params.initial_window_segments)
        self._set_bundle_cap(b, b.connections.steady_mbps if b.warm else b.cap_mbps)

    def cut(self, edge: Edge) -> None:
        """A fault cuts the hop (link down, partition, relay dead): it carries nothing."""
        b = self.bundles[edge]
        b.cuts += 1
        self._set_bundle_cap(b, b.cap_mbps)

    def mend(self, edge: Edge) -> None:
        """A cut ends; when none is left, the relays re-open the hop's connections, which go
        through slow start again."""
        b = self.bundles[edge]
        b.cuts -= 1
        if b.cuts == 0:
            b.ramp += 1
            b.warm = True
            self.env.process(self._slow_start(b, b.ramp))

    def use(self, edges: Sequence[Edge]) -> None:
        """Sessions start sending over these hops; a cold bundle (re)starts slow start."""
        for e in edges:
            b = self.bundles[e]
            cold = not b.warm or (self.params.slow_start_after_idle
                                  and b.users == 0 and self.env.now - b.idle_since_s > b.connections.rto_s)
            b.users += 1
            if cold and b.users == 1:
                b.ramp += 1
                self.env.process(self._slow_start(b, b.ramp))

    def release(self, edges: Sequence[Edge]) -> None:
        for e in edges:
            b = self.bundles[e]
            b.users -= 1
            if b.users == 0:
                b.idle_since_s = self.env.now

    def touch(self, edges: Sequence[Edge]) -> None:
        """A message crossed these hops: they were not idle just now."""
        for e in edges:
            b = self.bundles[e]
            if b.users == 0:
                b.idle_since_s = max(b.idle_since_s, self.env.now)

    def _slow_start(self, b: HopBundle, ramp: int):
        b.warm = True
        start = self.env.now
        for offset_s, cap in b.connections.slow_start():
            wait = start + offset_s - self.env.now
            if wait > 0:
                yield self.env.timeout(wait)
            if b.ramp != ramp:
                return
            self._set_bundle_cap(b, cap)
            self.fluid.commit()


# ---------------------------------------------------------------------------------------------
# Relays and the control plane


@dataclass(eq=False)
class Relay:
    """A relay in one datacenter: its decisions are a `RelayCore`'s, the object real relays run
    (tables installed, routes retired, ingress choices); this model adds who waits for a route."""

    name: str
    core: RelayCore = field(init=False)
    waiting: dict[str, list[simpy.Event]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self.core = RelayCore(self.name)

    def install(self, table: RelayTable, relays: Sequence[str], now_s: float) -> None:
        """A table push: the core compiles and installs it (or ignores a stale one)."""
        self.core.install(table, {r: f"sim://{r}" for r in relays}, now_s)

    def has_ingress(self, session: str) -> bool:
        return self.core.planned(session)


@dataclass(frozen=True)
class PlanRecord:
    """One decision of the controller, for the results (solve time is wall-clock, not simulated)."""

    at_s: float
    reason: str
    solve_s: float
    planned_mbps: dict[str, float]
    config: str = ""
    """Which routing configuration made the decision (`PlanStats.config`)."""


@dataclass(frozen=True)
class SessionOpened:
    """A session's publisher and subscribers are at their relays (a simulator notice: the
    controller hears it as each relay's `Interest`, exactly as real relays report it)."""

    demand: Demand


@dataclass(frozen=True)
class SessionClosed:
    session: str


class ControlPlane:
    """Carries events to the sans-IO controller and its tables back to the relays, with delays.

    In a run without faults relays do not fail, so they send no heartbeats and the
    controller's heartbeat timeout is off (`runner` builds it so); link state is the configured
    one, not reported. With faults, `sim.faults` makes relays beat and report (`tell`), marks
    those that cannot reach the controller (`deaf`) and stops the controller (`stopped`).

    The set-up of a session is the exchange real relays go through, charged over each relay's
    own round trip to the controller (`stemflow.controller_site`; `controller_rtts_ms`):
    - every relay has registered and received a first table before the run starts (the
      emulator waits for this too, before any session starts);
    - a session's subscribers subscribed before its first message (in the emulator they are
      ready before the publisher starts), so the controller hears of the session when its
      publisher's relay reports it: half that relay's round trip after the first message
      reached the relay; messages arriving at the same instant are handed over together
      (`Controller.handle_all`);
    - the controller decides at once (its real solve time is recorded as `solve_s`, not spent
      in simulated time, so runs stay deterministic), and each relay's table arrives half that
      relay's round trip later; the relay then releases the frames it held.
    A frame never overtakes its table (see `stemflow.controller_site`), so the route a frame
    takes is read from the tables as last sent (`route`), while a relay forwards a new session
    only once its own table has arrived (`ingress_ready`).
    """

    def __init__(self, env: simpy.Environment, controller: Controller, relays: dict[str, Relay],
                 rtts_ms: Mapping[str, float], on_tables: Callable[[], None]):
        self.env, self.controller, self.relays = env, controller, relays
        self.on_tables = on_tables
        self.plans: list[PlanRecord] = []
        self._inbox: dict[float, list[Event]] = {}
        self._open: dict[str, Demand] = {}
        self.one_way_s = {r: rtts_ms.get(r, 0.0) / 2e3 for r in relays}
        self._sent = {r: RelayCore(r) for r in relays}
        """Per relay, its tables as the controller last sent them (arrived or on their way)."""
        self.stopped = False
        """The controller process is down (`sim.faults`): what reaches it is lost."""
        self.deaf: set[str] = set()
        """Relays that cannot reach the controller or be reached (dead, or cut off by a fault)."""

    def send(self, event: SessionOpened | SessionClosed) -> None:
        """Tell the controller, as relays do: a session's opening travels as its relays'
        interest (`interests_of`) from the publisher's relay, half that relay's round trip from
        now; its closing as each relay's withdrawal (`withdrawn`), each from its own relay."""
        if isinstance(event, SessionOpened):
            self._open[event.demand.session] = event.demand
            for interest in interests_of(event.demand):
                self.tell(event.demand.source, interest)
            return
        demand = self._open.pop(event.session, None)
        for interest in withdrawn(demand) if demand is not None else ():
            self.tell(interest.relay, interest)

    def tell(self, relay: str, event: Event) -> None:
        """`relay` sends the controller `event`: it arrives half the relay's round trip later,
        unless the relay is cut off now."""
        if relay not in self.deaf:
            self._post(self.env.now + self.one_way_s[relay], event)

    def open_interests(self, relay: str) -> list[Event]:
        """What `relay` reports when it (re-)registers: the interest of the open sessions it has
        publishers or subscribers of."""
        return [i for d in self._open.values() for i in interests_of(d) if i.relay == relay]

    def forget(self, relay: str) -> None:
        """The relay process died: its tables are gone, and so is the controller's record of
        what it sent it."""
        self.relays[relay] = Relay(relay)
        self._sent[relay] = RelayCore(relay)

    def _post(self, at: float, event: Event) -> None:
        if at not in self._inbox:
            self._inbox[at] = []
            self.env.process(self._deliver(at))
        self._inbox[at].append(event)

    def _deliver(self, at: float):
        yield self.env.timeout(at - self.env.now)
        events = self._inbox.pop(at)
        if not self.stopped:
            self._decide(events, delayed=True)

    def _decide(self, events: list[Event], delayed: bool) -> None:
        actions = self.controller.handle_all(events, self.env.now)
        for a in actions:
            if isinstance(a, PlanComputed):
                self.plans.append(PlanRecord(a.at_s, a.reason, a.plan.stats.total_s,
                                             {s: p.rate_mbps for s, p in a.plan.sessions.items()},
                                             a.plan.stats.config))
        for p in (a for a in actions if isinstance(a, PushTable)):
            if p.relay not in self.relays or p.relay in self.deaf:
                continue
            self._sent[p.relay].install(p.table, {r: f"sim://{r}" for r in self.relays}, self.env.now)
            if delayed:
                self.env.process(self._push(p, self.one_way_s[p.relay]))
            else:
                self._arrive(p)

    def _push(self, p: PushTable, delay_s: float):
        yield self.env.timeout(delay_s)
        self._arrive(p)

    def _arrive(self, p: PushTable) -> None:
        if p.relay in self.deaf:
            return
        relay = self.relays[p.relay]
        relay.install(p.table, list(self.relays), self.env.now)
        self.on_tables()
        for session in [s for s in relay.waiting if relay.has_ingress(s)]:
            for ev in relay.waiting.pop(session):
                ev.succeed()

    def join_all(self) -> None:
        """Every relay registers and gets its first table before the run starts."""
        self._decide([RelayJoined(name, f"sim://{name}") for name in sorted(self.relays)],
                     delayed=False)

    def ingress_ready(self, datacenter: str, session: str) -> simpy.Event:
        """An event that fires once the relay in `datacenter` can forward `session`."""
        relay = self.relays[datacenter]
        ev = self.env.event()
        if relay.has_ingress(session):
            ev.succeed()
        else:
            relay.waiting[session].append(ev)
        return ev

    def route(self, session: str, source: str) -> SessionRoute | None:
        """The way `session`'s frames from `source` go, by the tables as last sent."""
        return session_route(self._sent, session, source)


# ---------------------------------------------------------------------------------------------
# The world of one run


@dataclass(frozen=True)
class Measurement:
    """One measured value, before the runner stamps it with run, mode, scenario and strategy."""

    session: str
    workload: str
    metric: str
    value: float
    t_s: float


@dataclass(eq=False)
class World:
    """Everything a session process needs: time, the network, the relays' control plane, a seed."""

    env: simpy.Environment
    scenario: Scenario
    net: NetworkState
    params: ModelParameters
    fluid: Fluid
    network: Network
    control: ControlPlane
    rng: np.random.Generator
    measurements: list[Measurement] = field(default_factory=list)
    rerouters: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Per active overlay session: re-read its route from the relays' new tables."""
    flows: dict[str, OverlayFlow] = field(default_factory=dict)
    """Per active overlay session, its flow (what `sim.faults` samples and looks up routes of)."""

    def record(self, session: str, workload: str, metric: str, value: float, t_s: float) -> None:
        self.measurements.append(Measurement(session, workload, metric, float(value), float(t_s)))

    on_tables: list[Callable[[], None]] = field(default_factory=list)
    """Called once the sessions have followed new tables (`sim.faults` settles what a dead
    relay swallowed)."""

    def tables_changed(self) -> None:
        for sid in sorted(self.rerouters):
            self.rerouters[sid]()
        for hook in self.on_tables:
            hook()
        self.fluid.commit()
