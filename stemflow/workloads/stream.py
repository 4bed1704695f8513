"""The stream workload: a live stream, frames every `frame_interval` at `bitrate` for `duration`.

Owns the stream kind: its scenario model (`type: stream`), its demand (its bitrate is its cap:
a live stream needs no more), its simulated stories (a rate-limited fluid flow and each frame's
delay through the relays or over direct TCP), its emulated publisher (one message per frame,
sent as one reliable stream), its rows (frame delay, deadline misses, and the transfer's
throughput) and its scaling (its bitrate is load on the links, so it scales with them).
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

from stemflow.emu.messages import HEADER, Message
from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.scenario import Positive, Session, WorkloadSpec
from stemflow.sim import latency
from stemflow.sim.model import SessionClosed, World
from stemflow.sim.transport import transfer_s
from stemflow.sim.workloads import (
    Carrier,
    DirectFlow,
    OverlayFlow,
    open_session,
    pick_path,
    record,
    record_transfer,
)
from stemflow.workloads.registry import Process, Report, Sample, WorkloadKind, register


class StreamWorkload(WorkloadSpec):
    """A live stream: frames every `frame_interval` at `bitrate` for `duration`."""

    type: Literal["stream"]
    """`stream`."""
    bitrate_mbps: Positive
    """Bitrate of the stream."""
    duration_s: Positive
    """How long the stream runs."""
    frame_interval_ms: Positive = 1000.0 / 30
    """Time between frames (default: 30 frames per second)."""
    deadline_ms: Positive = 400.0
    """A frame delivered later than this after capture counts as missed."""


class Paced(Protocol):
    """A live source: `bitrate_mbps` on average, a frame every `frame_interval_ms` (a stream,
    a video)."""

    @property
    def bitrate_mbps(self) -> float: ...
    @property
    def frame_interval_ms(self) -> float: ...


def rate_cap_mbps(session: Session, w: StreamWorkload, net: NetworkState) -> float:
    return w.bitrate_mbps


# -- simulated -----------------------------------------------------------------------------------


def frame_queue_s(carrier: Carrier, w: Paced, t_ready: float, now: float) -> float:
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


def _outcome(world: World, s: Session, w: StreamWorkload, sub: str, delays: list[float]) -> None:
    missed = sum(1 for d in delays if not d * 1e3 <= w.deadline_ms)
    record(world, s, sub, "deadline_miss_ratio", missed / max(len(delays), 1), 0.0)


def overlay(world: World, s: Session, w: StreamWorkload, demand: Demand) -> Process:
    env, network, relay_ms = world.env, world.network, world.scenario.relay.processing_delay_ms
    t0 = env.now
    frame_bytes = w.bitrate_mbps * 1e6 / 8 * w.frame_interval_ms / 1e3
    yield from open_session(world, s, demand, frame_bytes)
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
        depart = max(at_relay, t_ready) + frame_queue_s(flow, w, t_ready, env.now)
        for sub in s.subscribers:
            hops = pick_path(world, flow.route.paths.get(world.net.clients[sub].datacenter, ())
                             if flow.route else ())
            d = math.inf if hops is None else (
                depart - t_k + latency.overlay_s(network, hops, frame_bytes, relay_ms,
                                                 demand.delay_sensitive)
                + latency.access_s(network.access[sub], frame_bytes))
            delays[sub].append(d)
            if math.isfinite(d):
                record(world, s, sub, "frame_delay_ms", d * 1e3, t_k)
    yield transfer.done
    flow.finish()
    world.control.send(SessionClosed(s.id))
    for sub in s.subscribers:
        _outcome(world, s, w, sub, delays[sub])
    now = env.now
    record_transfer(world, s, size, t0, t_ready,
                    {sub: now + flow.last_byte_s(sub) for sub in s.subscribers})


def direct(world: World, s: Session, w: StreamWorkload, demand: Demand) -> Process:
    done = [world.env.process(_direct_to(world, s, w, sub)) for sub in s.subscribers]
    yield world.env.all_of(done)


def _direct_to(world: World, s: Session, w: StreamWorkload, sub: str) -> Process:
    env = world.env
    t0 = env.now
    frame_bytes = w.bitrate_mbps * 1e6 / 8 * w.frame_interval_ms / 1e3
    size = w.bitrate_mbps * 1e6 / 8 * w.duration_s
    flow = DirectFlow(world, s.publisher, sub, size, w.bitrate_mbps)
    yield env.timeout(flow.conn.handshake_s)
    t_ready = env.now
    transfer = flow.start()
    delays: list[float] = []
    for t_k in _frames(w, t0):
        if t_k > env.now:
            yield env.timeout(t_k - env.now)
        depart = max(t_k, t_ready) + frame_queue_s(flow, w, t_ready, env.now)
        d = depart - t_k + flow.conn.rtt_ms / 2e3 + transfer_s(frame_bytes, flow.conn.steady_mbps)
        delays.append(d)
        record(world, s, sub, "frame_delay_ms", d * 1e3, t_k)
    yield transfer.done
    _outcome(world, s, w, sub, delays)
    record_transfer(world, s, size, t0, t_ready, {sub: env.now + flow.conn.rtt_ms / 2e3})


# -- emulated ------------------------------------------------------------------------------------


def schedule(w: StreamWorkload) -> list[Message]:
    """One message per frame, each due at its capture instant."""
    interval = w.frame_interval_ms / 1e3
    frame = max(HEADER.size, int(w.bitrate_mbps * 1e6 * interval / 8))
    return [Message(i, frame, i * interval) for i in range(int(w.duration_s / interval))]


def emu_rows(s: Session, w: StreamWorkload, pub: Report, subs: list[Report]) -> list[Sample]:
    """Per subscriber: each frame's delay, and the share of frames late or never delivered."""
    out = []
    for sub in subs:
        delays = sub["delays_ms"]
        out += [Sample(sub["subscriber"], "frame_delay_ms", d, i * w.frame_interval_ms / 1e3)
                for i, d in enumerate(delays)]
        late = sum(d > w.deadline_ms for d in delays) + (sub["expected"] - len(delays))
        out.append(Sample(sub["subscriber"], "deadline_miss_ratio", late / max(1, sub["expected"])))
    return out


def scaled(w: StreamWorkload, rate_scale: float, size_scale: float) -> StreamWorkload:
    """A frame takes as long to send at any scale, so its delay and deadline mean what they mean
    unscaled (a 25 Mbit/s stream on links scaled to a quarter weighs four times as much)."""
    return w.model_copy(update={"bitrate_mbps": w.bitrate_mbps * rate_scale})


KIND = register(WorkloadKind(
    spec=StreamWorkload,
    metrics=("frame_delay_ms", "deadline_miss_ratio", "completion_s", "throughput_mbps", "mean_rate_mbps"),
    rate_cap_mbps=rate_cap_mbps, simulate_overlay=overlay, simulate_direct=direct,
    schedule=schedule, emu_rows=emu_rows, scaled=scaled))
