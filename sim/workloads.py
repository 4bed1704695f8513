"""Sessions as SimPy processes: what every workload's story is told with, and which story runs.

Owns carrying a session's bytes — `OverlayFlow` through the relays (the client's connection to
its relay, the controller's tables, the relays' persistent connections), `DirectFlow` over
direct TCP across the Internet path — opening a session at its relay, the path a message takes,
and recording measurements; `session_process` runs the story a session's workload kind tells
(`stemflow.workloads`: each kind's module tells its own, over the overlay and over direct TCP).
Rates come from the fluid model (`sim.model.Fluid`), the delays of messages and frames from
`sim.latency`.

Connections, as modelled:
- Direct TCP opens a connection per transfer: a bulk transfer, a stream and each message pay a
  handshake (`direct_persistent: 1` keeps one per session instead).
- A client opens one connection to its relay when it first publishes and keeps it for the
  session, as a Pub/Sub client keeps its channel; a subscriber's is already open (it subscribed
  before anything was published). These access hops are short, so their handshake costs little.
- Relay-to-relay connections are persistent: opened when the relays join, never per session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stemflow.sim import latency
from stemflow.sim.model import SessionOpened, World
from stemflow.sim.routes import SessionRoute
from stemflow.sim.transfers import Transfer
from stemflow.sim.transport import ConnectionModel

from stemflow.routing.demand import Demand
from stemflow.scenario import Session
from stemflow.workloads.registry import Process, kind_of, subscriber_label

# ---------------------------------------------------------------------------------------------
# Carrying a session's bytes


def _merged_steps(conns: Sequence[ConnectionModel]) -> list[tuple[float, float]]:
    """Several connections in series ramp together: at each instant the slowest one's cap."""
    ramps = [c.slow_start() for c in conns]
    times = sorted({t for r in ramps for t, _ in r})
    return [(t, min(next(rate for at, rate in reversed(r) if at <= t) for r in ramps)) for t in times]


class Carrier:
    """A transfer whose cap is its connections' slow-start cap and, for a stream, a rate limit."""

    world: World
    transfer: Transfer | None
    limit_mbps: float
    ramp_mbps: float = 0.0
    paused: bool = False

    def cap_mbps(self) -> float:
        return 0.0 if self.paused else min(self.ramp_mbps, self.limit_mbps)

    def set_limit(self, limit_mbps: float) -> None:
        """A stream that fell behind may send faster than its bitrate until it has caught up."""
        if limit_mbps != self.limit_mbps:
            self.limit_mbps = limit_mbps
            if self.transfer is not None and not self.transfer.done.triggered:
                self.world.fluid.recap(self.transfer, self.cap_mbps())
                self.world.fluid.commit()

    def _ramp(self, steps: list[tuple[float, float]]) -> Process:
        """The connections leave slow start: the transfer's cap follows the steps up to steady."""
        env = self.world.env
        start = env.now
        for offset_s, rate in steps[1:]:
            yield env.timeout(start + offset_s - env.now)
            t = self.transfer
            if t is None or t.done.triggered:
                return
            self.ramp_mbps = rate
            self.world.fluid.recap(t, self.cap_mbps())
            self.world.fluid.commit()


class OverlayFlow(Carrier):
    """A session's fluid flow through the relays: access up, the hops its route loads, access down.

    A multicast session is one flow: the publisher sends each byte once and relays replicate it,
    so every subscriber receives at the session's rate (a reliable session moves at the pace of
    its slowest subscriber).
    """

    def __init__(self, world: World, session: Session, size_bytes: float, limit_mbps: float):
        self.world, self.session, self.size_bytes, self.limit_mbps = world, session, size_bytes, limit_mbps
        self.source = world.net.clients[session.publisher].datacenter
        self.route: SessionRoute | None = None
        self.transfer: Transfer | None = None

    def start(self) -> Transfer:
        w = self.world
        self.route = w.control.route(self.session.id, self.source)
        resources, weights = self.load_of(self.route)
        ends = [self.session.publisher, *self.session.subscribers]
        conns = [w.network.access[c] for c in ends]
        steps = _merged_steps(conns)
        self.ramp_mbps = steps[0][1]
        self.transfer = w.fluid.start(resources, weights, self.cap_mbps(), self.size_bytes)
        w.network.use(self._edges(self.route))
        w.rerouters[self.session.id] = self.reroute
        w.flows[self.session.id] = self
        w.env.process(self._ramp(steps))
        w.fluid.commit()
        return self.transfer

    def finish(self) -> None:
        self.world.rerouters.pop(self.session.id, None)
        self.world.flows.pop(self.session.id, None)
        self.world.network.release(self._edges(self.route))

    def reroute(self) -> None:
        """New tables arrived: carry the session the way the relays now forward it."""
        w, t = self.world, self.transfer
        route = w.control.route(self.session.id, self.source)
        if t is None or t.done.triggered or route == self.route:
            return
        w.network.release(self._edges(self.route))
        if route is None:  # the plan gave this session nothing: the ingress relay holds it
            self.paused = True
            w.fluid.recap(t, self.cap_mbps())
        else:
            w.network.use(self._edges(route))
            w.fluid.reroute(t, *self.load_of(route))
            if self.paused:
                self.paused = False
                w.fluid.recap(t, self.cap_mbps())
        self.route = route

    def last_byte_s(self, subscriber: str) -> float:
        """After the last byte left the publisher: its propagation to `subscriber` (slowest path)."""
        w = self.world
        sink = w.net.clients[subscriber].datacenter
        paths = self.route.paths.get(sink, ()) if self.route else ()
        worst = max((latency.propagation_s(w.network, hops, w.scenario.relay.processing_delay_ms)
                     for hops, _ in paths), default=math.inf)
        return (w.network.access[self.session.publisher].rtt_ms / 2e3 + worst
                + w.network.access[subscriber].rtt_ms / 2e3)

    def _edges(self, route: SessionRoute | None) -> list[tuple[str, str]]:
        return sorted(route.hop_share) if route else []

    def load_of(self, route: SessionRoute | None) -> tuple[list[int], list[float]]:
        net = self.world.network
        resources = [net.access_up[self.session.publisher]]
        weights = [1.0]
        for edge in self._edges(route):
            resources.append(net.bundles[edge].resource)
            weights.append(route.hop_share[edge])
        for s in self.session.subscribers:
            resources.append(net.access_down[s])
            weights.append(1.0)
        return resources, weights


class DirectFlow(Carrier):
    """One TCP connection from the publisher to one subscriber over the Internet path."""

    def __init__(self, world: World, publisher: str, subscriber: str, size_bytes: float, limit_mbps: float):
        self.world, self.publisher, self.subscriber = world, publisher, subscriber
        self.size_bytes, self.limit_mbps = size_bytes, limit_mbps
        self.conn = ConnectionModel.over(world.net.internet_path(publisher, subscriber), world.net.tcp, 1,
                                         world.params.initial_window_segments)
        self.transfer: Transfer | None = None

    def start(self) -> Transfer:
        w, net = self.world, self.world.network
        steps = self.conn.slow_start()
        self.ramp_mbps = steps[0][1]
        self.transfer = w.fluid.start(
            [net.access_up[self.publisher], net.internet(self.publisher, self.subscriber),
             net.access_down[self.subscriber]], [1.0, 1.0, 1.0], self.cap_mbps(), self.size_bytes)
        w.env.process(self._ramp(steps))
        w.fluid.commit()
        return self.transfer


# ---------------------------------------------------------------------------------------------
# What every story uses


def session_process(world: World, session: Session, demand: Demand, direct: bool) -> Process:
    """The whole life of one session under one strategy; measurements go to `world.record`."""
    yield world.env.timeout(session.start_s)
    kind = kind_of(session.workload)
    story = kind.simulate_direct if direct else kind.simulate_overlay
    yield from story(world, session, session.workload, demand)


def record(world: World, session: Session, subscriber: str | None, metric: str, value: float,
           t_s: float) -> None:
    """One measurement of `session`, at `subscriber` (None: of the session as a whole), under
    the one label rule; a metric its workload kind does not declare is an error."""
    kind = kind_of(session.workload)
    kind.check_metric(metric)
    world.record(subscriber_label(session, subscriber), kind.type, metric, value, t_s)


def open_session(world: World, session: Session, demand: Demand, first_bytes: float) -> Process:
    """The publisher connects to its relay and publishes; the relay waits for the controller."""
    conn = world.network.access[session.publisher]
    yield world.env.timeout(conn.handshake_s + latency.access_s(conn, first_bytes))
    source = world.net.clients[session.publisher].datacenter
    world.control.send(SessionOpened(demand))
    yield world.control.ingress_ready(source, session.id)


def record_transfer(world: World, session: Session, size_bytes: float, t0: float,
                    t_first: float, arrival_s: dict[str, float]) -> None:
    """A transfer's rows per subscriber: started at `t0`, first byte sent at `t_first`, its last
    byte at that subscriber at `arrival_s[subscriber]` (never, if inf)."""
    for sub, arrival in arrival_s.items():
        if not math.isfinite(arrival):
            continue
        record(world, session, sub, "completion_s", arrival - t0, t0)
        record(world, session, sub, "throughput_mbps", size_bytes * 8 / (arrival - t0) / 1e6, t0)
        record(world, session, sub, "mean_rate_mbps", size_bytes * 8 / (arrival - t_first) / 1e6, t0)


def pick_path(world: World, paths: Sequence[tuple[tuple[str, ...], float]]) -> tuple[str, ...] | None:
    """The path a frame takes: the relays' splits, drawn from the run's seeded generator."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0][0]
    probs = [p for _, p in paths]
    i = int(world.rng.choice(len(paths), p=[p / sum(probs) for p in probs]))
    return paths[i][0]
