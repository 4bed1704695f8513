"""Sessions as SimPy processes: a publisher publishes, relays forward, subscribers receive.

Owns the story of each workload — a bulk transfer, unary messages (optionally answered), a live
stream — told twice: over the overlay (the client's connection to its relay, the controller's
tables, the relays' persistent connections) and over direct TCP (one connection per subscriber
across the Internet path), and the measurements each story yields. Rates come from the fluid
model (`sim.model.Fluid`), the delays of messages and frames from `sim.latency`.

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
from collections.abc import Callable, Generator, Sequence

import simpy
from stemflow.sim import latency
from stemflow.sim.model import SessionClosed, SessionOpened, World
from stemflow.sim.routes import SessionRoute
from stemflow.sim.transfers import Transfer
from stemflow.sim.transport import ConnectionModel, transfer_s

from stemflow.routing.demand import Demand
from stemflow.scenario import BulkWorkload, MessagesWorkload, Session, StreamWorkload

Process = Generator[simpy.Event, object, None]


# ---------------------------------------------------------------------------------------------
# Carrying a session's bytes


def _merged_steps(conns: Sequence[ConnectionModel]) -> list[tuple[float, float]]:
    """Several connections in series ramp together: at each instant the slowest one's cap."""
    ramps = [c.slow_start() for c in conns]
    times = sorted({t for r in ramps for t, _ in r})
    return [(t, min(next(rate for at, rate in reversed(r) if at <= t) for r in ramps)) for t in times]


class _Carrier:
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


class OverlayFlow(_Carrier):
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
        resources, weights = self._load_of(self.route)
        ends = [self.session.publisher, *self.session.subscribers]
        conns = [w.network.access[c] for c in ends]
        steps = _merged_steps(conns)
        self.ramp_mbps = steps[0][1]
        self.transfer = w.fluid.start(resources, weights, self.cap_mbps(), self.size_bytes)
        w.network.use(self._edges(self.route))
        w.rerouters[self.session.id] = self.reroute
        w.env.process(self._ramp(steps))
        w.fluid.commit()
        return self.transfer

    def finish(self) -> None:
        self.world.rerouters.pop(self.session.id, None)
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
            w.fluid.reroute(t, *self._load_of(route))
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

    def _load_of(self, route: SessionRoute | None) -> tuple[list[int], list[float]]:
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


class DirectFlow(_Carrier):
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
# Session stories


def session_process(world: World, session: Session, demand: Demand, direct: bool) -> Process:
    """The whole life of one session under one strategy; measurements go to `world.record`."""
    yield world.env.timeout(session.start_s)
    w = session.workload
    if isinstance(w, BulkWorkload):
        yield from (_direct_bulk if direct else _overlay_bulk)(world, session, w, demand)
    elif isinstance(w, MessagesWorkload):
        yield from (_direct_messages if direct else _overlay_messages)(world, session, w, demand)
    else:
        yield from (_direct_stream if direct else _overlay_stream)(world, session, w, demand)


def _open(world: World, session: Session, demand: Demand, first_bytes: float) -> Process:
    """The publisher connects to its relay and publishes; the relay waits for the controller."""
    conn = world.network.access[session.publisher]
    yield world.env.timeout(conn.handshake_s + latency.access_s(conn, first_bytes))
    source = world.net.clients[session.publisher].datacenter
    world.control.send(SessionOpened(demand))
    yield world.control.ingress_ready(source, session.id)


def _record_transfer(world: World, session: Session, workload: str, size_bytes: float, t0: float,
                     t_first: float, arrival_s: dict[str, float]) -> None:
    for sub, arrival in arrival_s.items():
        label = session.id if len(arrival_s) == 1 else f"{session.id}/{sub}"
        if not math.isfinite(arrival):
            continue
        world.record(label, workload, "completion_s", arrival - t0, t0)
        world.record(label, workload, "throughput_mbps", size_bytes * 8 / (arrival - t0) / 1e6, t0)
        world.record(label, workload, "mean_rate_mbps", size_bytes * 8 / (arrival - t_first) / 1e6, t0)


def _overlay_bulk(world: World, s: Session, w: BulkWorkload, demand: Demand) -> Process:
    t0 = world.env.now
    yield from _open(world, s, demand, world.net.tcp.mss_bytes)
    flow = OverlayFlow(world, s, w.size_bytes, math.inf)
    t_first = world.env.now
    yield flow.start().done
    flow.finish()
    world.control.send(SessionClosed(s.id))
    now = world.env.now
    _record_transfer(world, s, "bulk", w.size_bytes, t0, t_first,
                     {sub: now + flow.last_byte_s(sub) for sub in s.subscribers})


def _direct_bulk(world: World, s: Session, w: BulkWorkload, demand: Demand) -> Process:
    t0 = world.env.now
    done = [world.env.process(_direct_bulk_to(world, s, w, sub, t0)) for sub in s.subscribers]
    yield world.env.all_of(done)


def _direct_bulk_to(world: World, s: Session, w: BulkWorkload, sub: str, t0: float) -> Process:
    flow = DirectFlow(world, s.publisher, sub, w.size_bytes, math.inf)
    yield world.env.timeout(flow.conn.handshake_s)
    t_first = world.env.now
    yield flow.start().done
    arrival = world.env.now + flow.conn.rtt_ms / 2e3
    label = s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}"
    world.record(label, "bulk", "completion_s", arrival - t0, t0)
    world.record(label, "bulk", "throughput_mbps", w.size_bytes * 8 / (arrival - t0) / 1e6, t0)
    world.record(label, "bulk", "mean_rate_mbps", w.size_bytes * 8 / (arrival - t_first) / 1e6, t0)


# -- messages ------------------------------------------------------------------------------------


def _send_times(world: World, w: MessagesWorkload, t0: float) -> list[float] | None:
    """At `rate_per_s`, Poisson arrivals drawn from the run's seed; otherwise one after another."""
    if w.rate_per_s is None:
        return None
    gaps = world.rng.exponential(1.0 / w.rate_per_s, size=w.count)
    gaps[0] = 0.0
    return (t0 + gaps.cumsum()).tolist()


def _pick(world: World, paths: Sequence[tuple[tuple[str, ...], float]]) -> tuple[str, ...] | None:
    """The path a frame takes: the relays' splits, drawn from the run's seeded generator."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0][0]
    probs = [p for _, p in paths]
    i = int(world.rng.choice(len(paths), p=[p / sum(probs) for p in probs]))
    return paths[i][0]


def _messages(world: World, s: Session, w: MessagesWorkload,
              one: Callable[[int, float], Process]) -> Process:
    """Send `count` messages: at their Poisson times, or each after the previous one completed."""
    t0 = world.env.now
    times = _send_times(world, w, t0)
    pending = []
    for i in range(w.count):
        if times is not None:
            if times[i] > world.env.now:
                yield world.env.timeout(times[i] - world.env.now)
            pending.append(world.env.process(one(i, world.env.now)))
        else:
            yield world.env.process(one(i, world.env.now))
    if pending:
        yield world.env.all_of(pending)


def _overlay_messages(world: World, s: Session, w: MessagesWorkload, demand: Demand) -> Process:
    env, network, relay_ms = world.env, world.network, world.scenario.relay.processing_delay_ms
    source = world.net.clients[s.publisher].datacenter
    pub_conn = network.access[s.publisher]
    reply_bytes = world.params.reply_bytes or w.size_bytes
    opened: set[str] = set()
    connected_s = env.now + pub_conn.handshake_s  # the publisher's channel to its relay

    def reply(sub: str, t_send: float) -> Process:
        rid, sub_dc = f"{s.id}/reply/{sub}", world.net.clients[sub].datacenter
        yield env.timeout(latency.access_s(network.access[sub], reply_bytes))
        if rid not in opened:  # the subscriber's first answer opens the reverse session
            opened.add(rid)
            world.control.send(SessionOpened(Demand(
                rid, sub_dc, (source,), sub, (s.publisher,), False, demand.max_rate_mbps,
                demand.priority, demand.latency_budget_ms)))
        yield world.control.ingress_ready(sub_dc, rid)
        route = world.control.route(rid, sub_dc)
        hops = _pick(world, route.paths.get(source, ()) if route else ())
        if hops is None:
            return
        network.touch(list(zip(hops, hops[1:], strict=False)))
        yield env.timeout(latency.overlay_s(network, hops, reply_bytes, relay_ms)
                          + latency.access_s(pub_conn, reply_bytes))
        world.record(s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}", "messages", "rr_latency_ms",
                     (env.now - t_send) * 1e3, t_send)

    def one(i: int, t_send: float) -> Process:
        if env.now < connected_s:
            yield env.timeout(connected_s - env.now)
        yield env.timeout(latency.access_s(pub_conn, w.size_bytes))
        if s.id not in opened:
            opened.add(s.id)
            world.control.send(SessionOpened(demand))
        yield world.control.ingress_ready(source, s.id)
        route = world.control.route(s.id, source)
        replies = []
        for sub in s.subscribers:
            hops = _pick(world, route.paths.get(world.net.clients[sub].datacenter, ()) if route else ())
            if hops is None:
                continue
            network.touch(list(zip(hops, hops[1:], strict=False)))
            arrive = (env.now + latency.overlay_s(network, hops, w.size_bytes, relay_ms)
                      + latency.access_s(network.access[sub], w.size_bytes))
            world.record(s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}", "messages", "latency_ms",
                         (arrive - t_send) * 1e3, t_send)
            if w.request_response:
                replies.append(env.process(_after(env, arrive, reply(sub, t_send))))
            else:
                replies.append(env.timeout(arrive - env.now))
        if replies:
            yield env.all_of(replies)

    yield from _messages(world, s, w, one)
    for sid in sorted(opened):
        world.control.send(SessionClosed(sid))


def _after(env: simpy.Environment, at: float, then: Process) -> Process:
    yield env.timeout(max(0.0, at - env.now))
    yield env.process(then)


def _direct_messages(world: World, s: Session, w: MessagesWorkload, demand: Demand) -> Process:
    env = world.env
    reply_bytes = world.params.reply_bytes or w.size_bytes
    conns = {sub: ConnectionModel.over(world.net.internet_path(s.publisher, sub), world.net.tcp, 1,
                                       world.params.initial_window_segments) for sub in s.subscribers}
    persistent = bool(world.params.direct_persistent)

    def one(i: int, t_send: float) -> Process:
        done = []
        for sub, conn in conns.items():
            label = s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}"
            arrive = t_send + latency.direct_s(conn, w.size_bytes, new_connection=not persistent or i == 0)
            world.record(label, "messages", "latency_ms", (arrive - t_send) * 1e3, t_send)
            end = arrive
            if w.request_response:
                end = arrive + latency.direct_s(conn, reply_bytes, new_connection=False)
                world.record(label, "messages", "rr_latency_ms", (end - t_send) * 1e3, t_send)
            done.append(env.timeout(end - env.now))
        yield env.all_of(done)

    yield from _messages(world, s, w, one)


# -- streams -------------------------------------------------------------------------------------


def _frame_queue_s(carrier: _Carrier, w: StreamWorkload, t_ready: float, now: float) -> float:
    """Captured bytes not yet sent, at the rate the stream gets now (the fluid backlog).

    A stream that fell behind (slow start, a congested hop) tries to clear its backlog within
    the next frame interval, at bitrate + backlog / interval if its connections allow; once
    caught up it sends at its bitrate again. The sender looks at its backlog once per frame.
    """
    transfer = carrier.transfer
    interval_s = w.frame_interval_ms / 1e3
    backlog = w.bitrate_mbps * 1e6 / 8 * (now - t_ready) - transfer.sent_at(now)
    carrier.set_limit(w.bitrate_mbps + max(backlog, 0.0) * 8 / interval_s / 1e6)
    if backlog <= 1.0:
        return 0.0
    return transfer_s(backlog, transfer.rate_mbps)


def _frames(w: StreamWorkload, t0: float) -> list[float]:
    """Capture instants of a stream's frames."""
    n = int(math.ceil(w.duration_s * 1e3 / w.frame_interval_ms - 1e-9))
    return [t0 + k * w.frame_interval_ms / 1e3 for k in range(n)]


def _stream_outcome(world: World, s: Session, w: StreamWorkload, sub: str, delays: list[float]) -> None:
    label = s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}"
    missed = sum(1 for d in delays if not d * 1e3 <= w.deadline_ms)
    world.record(label, "stream", "deadline_miss_ratio", missed / max(len(delays), 1), 0.0)


def _overlay_stream(world: World, s: Session, w: StreamWorkload, demand: Demand) -> Process:
    env, network, relay_ms = world.env, world.network, world.scenario.relay.processing_delay_ms
    t0 = env.now
    frame_bytes = w.bitrate_mbps * 1e6 / 8 * w.frame_interval_ms / 1e3
    yield from _open(world, s, demand, frame_bytes)
    t_ready = env.now
    size = w.bitrate_mbps * 1e6 / 8 * w.duration_s
    flow = OverlayFlow(world, s, size, w.bitrate_mbps)
    transfer = flow.start()
    pub_conn = network.access[s.publisher]
    delays: dict[str, list[float]] = {sub: [] for sub in s.subscribers}
    for t_k in _frames(w, t0):
        if t_k > env.now:
            yield env.timeout(t_k - env.now)
        at_relay = t_k + latency.access_s(pub_conn, frame_bytes)
        depart = max(at_relay, t_ready) + _frame_queue_s(flow, w, t_ready, env.now)
        for sub in s.subscribers:
            hops = _pick(world, flow.route.paths.get(world.net.clients[sub].datacenter, ())
                         if flow.route else ())
            d = math.inf if hops is None else (
                depart - t_k + latency.overlay_s(network, hops, frame_bytes, relay_ms)
                + latency.access_s(network.access[sub], frame_bytes))
            delays[sub].append(d)
            if math.isfinite(d):
                world.record(s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}", "stream",
                             "frame_delay_ms", d * 1e3, t_k)
    yield transfer.done
    flow.finish()
    world.control.send(SessionClosed(s.id))
    for sub in s.subscribers:
        _stream_outcome(world, s, w, sub, delays[sub])
    now = env.now
    _record_transfer(world, s, "stream", size, t0, t_ready,
                     {sub: now + flow.last_byte_s(sub) for sub in s.subscribers})


def _direct_stream(world: World, s: Session, w: StreamWorkload, demand: Demand) -> Process:
    done = [world.env.process(_direct_stream_to(world, s, w, sub)) for sub in s.subscribers]
    yield world.env.all_of(done)


def _direct_stream_to(world: World, s: Session, w: StreamWorkload, sub: str) -> Process:
    env = world.env
    t0 = env.now
    frame_bytes = w.bitrate_mbps * 1e6 / 8 * w.frame_interval_ms / 1e3
    size = w.bitrate_mbps * 1e6 / 8 * w.duration_s
    flow = DirectFlow(world, s.publisher, sub, size, w.bitrate_mbps)
    yield env.timeout(flow.conn.handshake_s)
    t_ready = env.now
    transfer = flow.start()
    label = s.id if len(s.subscribers) == 1 else f"{s.id}/{sub}"
    delays: list[float] = []
    for t_k in _frames(w, t0):
        if t_k > env.now:
            yield env.timeout(t_k - env.now)
        depart = max(t_k, t_ready) + _frame_queue_s(flow, w, t_ready, env.now)
        d = depart - t_k + flow.conn.rtt_ms / 2e3 + transfer_s(frame_bytes, flow.conn.steady_mbps)
        delays.append(d)
        world.record(label, "stream", "frame_delay_ms", d * 1e3, t_k)
    yield transfer.done
    _stream_outcome(world, s, w, sub, delays)
    arrival = env.now + flow.conn.rtt_ms / 2e3
    world.record(label, "stream", "completion_s", arrival - t0, t0)
    world.record(label, "stream", "throughput_mbps", size * 8 / (arrival - t0) / 1e6, t0)
    world.record(label, "stream", "mean_rate_mbps", size * 8 / (arrival - t_ready) / 1e6, t0)
