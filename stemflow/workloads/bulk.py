"""The bulk workload: move `size` bytes as fast as the route allows.

Owns the bulk kind: its scenario model (`type: bulk`), its demand (no cap of its own), its
simulated stories (one fluid transfer through the relays, or one TCP connection per subscriber
across the Internet), its emulated publisher (the bytes cut into chunks, sent as one reliable
stream), its rows (throughput = size / completion time) and its scaling (its size scales with
the emulator's size scale).
"""

from __future__ import annotations

import math
from typing import Literal

from stemflow.emu.messages import HEADER, Message
from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.scenario import Positive, Session, WorkloadSpec
from stemflow.sim.model import SessionClosed, World
from stemflow.sim.workloads import DirectFlow, OverlayFlow, open_session, record_transfer
from stemflow.workloads.registry import Process, Report, Sample, WorkloadKind, register

BULK_CHUNK_BYTES = 64 * 1024
"""A bulk transfer is published in 64 KiB messages: large enough that per-message costs vanish,
small enough to stripe over parallel connections and to fit any relay frame limit."""


class BulkWorkload(WorkloadSpec):
    """Move `size` bytes as fast as the route allows (throughput = size / completion time)."""

    type: Literal["bulk"]
    """`bulk`."""
    size_bytes: Positive
    """Bytes to move."""


def rate_cap_mbps(session: Session, w: BulkWorkload, net: NetworkState) -> float:
    return math.inf


def overlay(world: World, s: Session, w: BulkWorkload, demand: Demand) -> Process:
    t0 = world.env.now
    yield from open_session(world, s, demand, world.net.tcp.mss_bytes)
    flow = OverlayFlow(world, s, w.size_bytes, math.inf)
    t_first = world.env.now
    yield flow.start().done
    flow.finish()
    world.control.send(SessionClosed(s.id))
    now = world.env.now
    record_transfer(world, s, w.size_bytes, t0, t_first,
                    {sub: now + flow.last_byte_s(sub) for sub in s.subscribers})


def direct(world: World, s: Session, w: BulkWorkload, demand: Demand) -> Process:
    t0 = world.env.now
    done = [world.env.process(_direct_to(world, s, w, sub, t0)) for sub in s.subscribers]
    yield world.env.all_of(done)


def _direct_to(world: World, s: Session, w: BulkWorkload, sub: str, t0: float) -> Process:
    flow = DirectFlow(world, s.publisher, sub, w.size_bytes, math.inf)
    yield world.env.timeout(flow.conn.handshake_s)
    t_first = world.env.now
    yield flow.start().done
    record_transfer(world, s, w.size_bytes, t0, t_first, {sub: world.env.now + flow.conn.rtt_ms / 2e3})


def schedule(w: BulkWorkload) -> list[Message]:
    """The bytes in `BULK_CHUNK_BYTES` chunks, all due at once (the stream paces them)."""
    total = max(HEADER.size, int(w.size_bytes))
    n = -(-total // BULK_CHUNK_BYTES)
    sizes = [BULK_CHUNK_BYTES] * (n - 1) + [total - BULK_CHUNK_BYTES * (n - 1)]
    return [Message(i, max(HEADER.size, s), 0.0) for i, s in enumerate(sizes)]


def emu_rows(s: Session, w: BulkWorkload, pub: Report, subs: list[Report]) -> list[Sample]:
    """Completion: the first chunk's publish to the last chunk's arrival, per subscriber."""
    out = []
    for sub in subs:
        if sub["received"] and sub["first_pub_t"] is not None:
            done = sub["last_t"] - sub["first_pub_t"]
            out.append(Sample(sub["subscriber"], "completion_s", done))
            out.append(Sample(sub["subscriber"], "throughput_mbps", sub["bytes"] * 8 / done / 1e6))
    return out


def scaled(w: BulkWorkload, rate_scale: float, size_scale: float) -> BulkWorkload:
    return w.model_copy(update={"size_bytes": w.size_bytes * size_scale})


KIND = register(WorkloadKind(
    spec=BulkWorkload, metrics=("completion_s", "throughput_mbps", "mean_rate_mbps"),
    rate_cap_mbps=rate_cap_mbps, simulate_overlay=overlay, simulate_direct=direct,
    schedule=schedule, emu_rows=emu_rows, scaled=scaled))
