"""The chat workload: one member of a room sending Poisson messages, text or images, to the others.

Owns the chat kind: its scenario model (`type: chat`: the room, the member's message rate, the
size mix of text and images, how long it talks), its schedule (the same messages at the same
times in the simulator and the emulator, drawn from the workload's `seed`), its demand (its mean
offered load), its simulated stories (each message's delay through the relays or over direct
TCP), its emulated roles (one unary publish per message) and its rows: delivery latency per
size class, `text_latency_ms` and `image_latency_ms`, so both drivers report p50/p95/p99 of each
in one schema.

A room is the sessions whose workloads name the same `room`: each member publishes to the
others as one session (the messaging app's room topic has a publisher per member in the same
way). In the emulator the members are scripted `stemflow.client` processes in the emulated
hosts; the browser path through a gateway is measured by `benchmarks/gateway.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from stemflow.emu.messages import HEADER, Message
from stemflow.network import NetworkState
from stemflow.protocol import MAX_PAYLOAD_BYTES
from stemflow.routing.demand import Demand
from stemflow.scenario import Positive, Session, WorkloadSpec
from stemflow.sim import latency
from stemflow.sim.model import SessionClosed, SessionOpened, World
from stemflow.sim.transport import ConnectionModel
from stemflow.sim.workloads import pick_path, record
from stemflow.workloads.registry import Process, Report, Sample, WorkloadKind, register

TEXT, IMAGE = "text_latency_ms", "image_latency_ms"
IMAGE_BURST_S = 0.2
"""Time an image may take to send at its session's planned rate: within the 150-200 ms a person
takes as instant (ITU-T G.114's one-way bound for interaction is 150 ms)."""
MAX_MESSAGES = 100_000
"""Most messages one member's schedule may hold: a member at 10 messages/s for almost 3 hours."""


class ChatWorkload(WorkloadSpec):
    """A room member's messages: Poisson at `rate_per_s` for `duration_s`, a share of them images."""

    type: Literal["chat"]
    """`chat`."""
    room: str = "general"
    """The room (sessions with the same room are its members' messages)."""
    rate_per_s: Positive = 0.5
    """This member's messages per second (Poisson arrivals)."""
    duration_s: Positive = 30.0
    """How long the member talks."""
    text_size_bytes: Positive = 200.0
    """Size of a text message (with its envelope)."""
    image_size_bytes: Positive = 500_000.0
    """Size of an image; at most one relay message (1 MiB): the messaging app cuts larger
    files into 256 KiB fragments, which this workload does not model."""
    image_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Share of messages that are images."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Draws the arrival times and which messages are images; give each member its own."""

    @model_validator(mode="after")
    def _bounded(self) -> ChatWorkload:
        if self.image_size_bytes > MAX_PAYLOAD_BYTES:
            raise ValueError(f"image_size: {self.image_size_bytes:.0f} bytes is more than one relay "
                             f"message ({MAX_PAYLOAD_BYTES} bytes)")
        if self.rate_per_s * self.duration_s > MAX_MESSAGES:
            raise ValueError(f"rate x duration: {self.rate_per_s * self.duration_s:.0f} messages, "
                             f"at most {MAX_MESSAGES}")
        return self


def _draw(w: ChatWorkload) -> list[tuple[float, bool]]:
    """(send time, is an image) of each message: Poisson times in [0, duration) from `seed`."""
    rng = np.random.default_rng(w.seed)
    times: list[float] = []
    t = float(rng.exponential(1.0 / w.rate_per_s))
    while t < w.duration_s:
        times.append(t)
        t += float(rng.exponential(1.0 / w.rate_per_s))
    images = rng.random(len(times)) < w.image_share
    return list(zip(times, images.tolist(), strict=True))


def schedule(w: ChatWorkload) -> list[Message]:
    """The member's messages, text or image, at their Poisson times."""
    return [Message(i, max(HEADER.size, int(w.image_size_bytes if img else w.text_size_bytes)), at)
            for i, (at, img) in enumerate(_draw(w))]


def size_classes(w: ChatWorkload) -> list[str]:
    """The metric each message's latency is recorded under, by sequence number."""
    return [IMAGE if img else TEXT for _, img in _draw(w)]


def rate_cap_mbps(session: Session, w: ChatWorkload, net: NetworkState) -> float:
    """What the member's session needs: its mean offered load, or, if it sends images, the rate
    that sends one in `IMAGE_BURST_S` (a chat's load is bursts; planned at its mean, an image
    would queue behind its own session's cap for seconds)."""
    mean_bytes = w.image_share * w.image_size_bytes + (1 - w.image_share) * w.text_size_bytes
    burst = w.image_size_bytes * 8.0 / IMAGE_BURST_S / 1e6 if w.image_share > 0 else 0.0
    return max(mean_bytes * 8.0 * w.rate_per_s / 1e6, burst)


# -- simulated -----------------------------------------------------------------------------------


def _talk(world: World, w: ChatWorkload, one: Callable[[Message], Process]) -> Process:
    """Send the schedule's messages at their times, each on its own (they may overlap)."""
    env = world.env
    t0 = env.now
    pending = []
    for m in schedule(w):
        if t0 + m.due_s > env.now:
            yield env.timeout(t0 + m.due_s - env.now)
        pending.append(env.process(one(m)))
    if pending:
        yield env.all_of(pending)


def overlay(world: World, s: Session, w: ChatWorkload, demand: Demand) -> Process:
    env, network, relay_ms = world.env, world.network, world.scenario.relay.processing_delay_ms
    source = world.net.clients[s.publisher].datacenter
    pub_conn = network.access[s.publisher]
    connected_s = env.now + pub_conn.handshake_s
    classes = size_classes(w)
    opened = False

    def one(m: Message) -> Process:
        nonlocal opened
        t_send = env.now
        if env.now < connected_s:
            yield env.timeout(connected_s - env.now)
        yield env.timeout(latency.access_s(pub_conn, m.size_bytes))
        if not opened:
            opened = True
            world.control.send(SessionOpened(demand))
        yield world.control.ingress_ready(source, s.id)
        route = world.control.route(s.id, source)
        arrivals = []
        for sub in s.subscribers:
            hops = pick_path(world, route.paths.get(world.net.clients[sub].datacenter, ()) if route else ())
            if hops is None:
                continue
            network.touch(list(zip(hops, hops[1:], strict=False)))
            arrive = (env.now + latency.overlay_s(network, hops, m.size_bytes, relay_ms,
                                                  demand.delay_sensitive)
                      + latency.access_s(network.access[sub], m.size_bytes))
            record(world, s, sub, classes[m.seq], (arrive - t_send) * 1e3, t_send)
            arrivals.append(env.timeout(arrive - env.now))
        if arrivals:
            yield env.all_of(arrivals)

    yield from _talk(world, w, one)
    if opened:
        world.control.send(SessionClosed(s.id))


def direct(world: World, s: Session, w: ChatWorkload, demand: Demand) -> Process:
    """Each member keeps a TCP connection to every other member (a full mesh, no relays)."""
    env = world.env
    conns = {sub: ConnectionModel.over(world.net.internet_path(s.publisher, sub), world.net.tcp, 1,
                                       world.params.initial_window_segments) for sub in s.subscribers}
    classes = size_classes(w)
    first = True

    def one(m: Message) -> Process:
        nonlocal first
        new, first = first, False
        t_send = env.now
        done = []
        for sub, conn in conns.items():
            arrive = t_send + latency.direct_s(conn, m.size_bytes, new_connection=new)
            record(world, s, sub, classes[m.seq], (arrive - t_send) * 1e3, t_send)
            done.append(env.timeout(arrive - env.now))
        yield env.all_of(done)

    yield from _talk(world, w, one)


# -- emulated ------------------------------------------------------------------------------------


def emu_rows(s: Session, w: ChatWorkload, pub: Report, subs: list[Report]) -> list[Sample]:
    """Each delivered message's one-way delay at each member, under its size class."""
    sent = _draw(w)
    return [Sample(sub["subscriber"], IMAGE if sent[seq][1] else TEXT, d, sent[seq][0])
            for sub in subs for seq, d in zip(sub["seqs"], sub["delays_ms"], strict=True)
            if 0 <= seq < len(sent)]


KIND = register(WorkloadKind(
    spec=ChatWorkload, metrics=(TEXT, IMAGE), rate_cap_mbps=rate_cap_mbps,
    simulate_overlay=overlay, simulate_direct=direct, schedule=schedule, emu_rows=emu_rows,
    unary=True))
