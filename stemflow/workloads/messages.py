"""The messages workload: `count` unary messages of `size`, optionally answered.

Owns the messages kind: its scenario model (`type: messages`), its demand (its offered load is
its cap), its simulated stories (each message's delay through the relays or over direct TCP,
and each answer's way back), its emulated roles (one unary publish per message; subscribers
answer a request-response session's), its rows (one-way and request-response latency) and its
scaling (none: a message is as large at any rate scale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import simpy
from pydantic import Field

from stemflow.emu.messages import HEADER, Message
from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.scenario import Positive, Session, WorkloadSpec
from stemflow.sim import latency
from stemflow.sim.model import SessionClosed, SessionOpened, World
from stemflow.sim.transport import ConnectionModel
from stemflow.sim.workloads import pick_path, record
from stemflow.workloads.registry import Process, Report, Sample, WorkloadKind, register


class MessagesWorkload(WorkloadSpec):
    """Unary messages of `size`; `count` of them, one after another or at `rate_per_s`."""

    type: Literal["messages"]
    """`messages`."""
    size_bytes: Positive
    """Size of each message."""
    count: Annotated[int, Field(ge=1)] = 1
    """Number of messages."""
    rate_per_s: Positive | None = None
    """Messages per second; default: one after another, each when the previous has arrived."""
    request_response: bool = False
    """`true`: each message is answered, and the latency is the round trip."""


def rate_cap_mbps(session: Session, w: MessagesWorkload, net: NetworkState) -> float:
    """The most bandwidth a messages workload can use: its offered load.

    At `rate_per_s`, size x rate. Without a rate, messages go one after another, each after the
    previous one arrived (or was answered): at most one message per loop, and no loop is shorter
    than the two access hops' RTTs. Without this cap a delay-sensitive message session, served
    first, would claim whole links and starve bulk sessions.
    """
    if w.rate_per_s is not None:
        return w.size_bytes * 8.0 * w.rate_per_s / 1e6
    clients = net.clients
    loop_ms = clients[session.publisher].access.rtt_ms + max(
        clients[s].access.rtt_ms for s in session.subscribers)
    return w.size_bytes * 8.0 / (max(loop_ms, 1e-3) / 1e3) / 1e6


# -- simulated -----------------------------------------------------------------------------------


def _send_times(world: World, w: MessagesWorkload, t0: float) -> list[float] | None:
    """At `rate_per_s`, Poisson arrivals drawn from the run's seed; otherwise one after another."""
    if w.rate_per_s is None:
        return None
    gaps = world.rng.exponential(1.0 / w.rate_per_s, size=w.count)
    gaps[0] = 0.0
    return (t0 + gaps.cumsum()).tolist()


def _messages(world: World, w: MessagesWorkload, one: Callable[[int, float], Process]) -> Process:
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


def overlay(world: World, s: Session, w: MessagesWorkload, demand: Demand) -> Process:
    env, network, relay_ms = world.env, world.network, world.scenario.relay.processing_delay_ms
    source = world.net.clients[s.publisher].datacenter
    pub_conn = network.access[s.publisher]
    reply_bytes = world.params.reply_bytes or w.size_bytes
    opened: set[str] = set()
    connected_s = env.now + pub_conn.handshake_s  # the publisher's channel to its relay
    ds = demand.delay_sensitive

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
        hops = pick_path(world, route.paths.get(source, ()) if route else ())
        if hops is None:
            return
        network.touch(list(zip(hops, hops[1:], strict=False)))
        yield env.timeout(latency.overlay_s(network, hops, reply_bytes, relay_ms, ds)
                          + latency.access_s(pub_conn, reply_bytes))
        record(world, s, sub, "rr_latency_ms", (env.now - t_send) * 1e3, t_send)

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
            hops = pick_path(world, route.paths.get(world.net.clients[sub].datacenter, ()) if route else ())
            if hops is None:
                continue
            network.touch(list(zip(hops, hops[1:], strict=False)))
            arrive = (env.now + latency.overlay_s(network, hops, w.size_bytes, relay_ms, ds)
                      + latency.access_s(network.access[sub], w.size_bytes))
            record(world, s, sub, "latency_ms", (arrive - t_send) * 1e3, t_send)
            if w.request_response:
                replies.append(env.process(_after(env, arrive, reply(sub, t_send))))
            else:
                replies.append(env.timeout(arrive - env.now))
        if replies:
            yield env.all_of(replies)

    yield from _messages(world, w, one)
    for sid in sorted(opened):
        world.control.send(SessionClosed(sid))


def _after(env: simpy.Environment, at: float, then: Process) -> Process:
    yield env.timeout(max(0.0, at - env.now))
    yield env.process(then)


def direct(world: World, s: Session, w: MessagesWorkload, demand: Demand) -> Process:
    env = world.env
    reply_bytes = world.params.reply_bytes or w.size_bytes
    conns = {sub: ConnectionModel.over(world.net.internet_path(s.publisher, sub), world.net.tcp, 1,
                                       world.params.initial_window_segments) for sub in s.subscribers}
    persistent = bool(world.params.direct_persistent)

    def one(i: int, t_send: float) -> Process:
        done = []
        for sub, conn in conns.items():
            arrive = t_send + latency.direct_s(conn, w.size_bytes, new_connection=not persistent or i == 0)
            record(world, s, sub, "latency_ms", (arrive - t_send) * 1e3, t_send)
            end = arrive
            if w.request_response:
                end = arrive + latency.direct_s(conn, reply_bytes, new_connection=False)
                record(world, s, sub, "rr_latency_ms", (end - t_send) * 1e3, t_send)
            done.append(env.timeout(end - env.now))
        yield env.all_of(done)

    yield from _messages(world, w, one)


# -- emulated ------------------------------------------------------------------------------------


def schedule(w: MessagesWorkload) -> list[Message]:
    """`count` messages, spaced evenly at `rate_per_s` or all due at once (sent one by one)."""
    gap = 1 / w.rate_per_s if w.rate_per_s else 0.0
    return [Message(i, max(HEADER.size, int(w.size_bytes)), i * gap) for i in range(w.count)]


def answered(w: MessagesWorkload) -> bool:
    return w.request_response


def emu_rows(s: Session, w: MessagesWorkload, pub: Report, subs: list[Report]) -> list[Sample]:
    """One-way delays at each subscriber (of unanswered messages); the publisher's round trips."""
    out = []
    if not w.request_response:
        out += [Sample(sub["subscriber"], "latency_ms", d, i)
                for sub in subs for i, d in enumerate(sub["delays_ms"])]
    out += [Sample(None, "rr_latency_ms", d, i) for i, d in enumerate(pub.get("rr_latencies_ms", []))]
    return out


KIND = register(WorkloadKind(
    spec=MessagesWorkload, metrics=("latency_ms", "rr_latency_ms"),
    rate_cap_mbps=rate_cap_mbps, simulate_overlay=overlay, simulate_direct=direct,
    schedule=schedule, emu_rows=emu_rows, unary=True, answered=answered))
