"""A toy workload, declared outside the package as a user would: `type: paced`, a transfer of
`size` sent at a fixed `rate`. One module, no other file edited; importing it registers it."""

from __future__ import annotations

import math
from typing import Literal

from stemflow.emu.messages import HEADER, Message
from stemflow.sim.model import SessionClosed
from stemflow.sim.workloads import DirectFlow, OverlayFlow, open_session, record_transfer

from stemflow.scenario import Positive, WorkloadSpec
from stemflow.workloads import Sample, WorkloadKind, register

CHUNK_BYTES = 64 * 1024


class PacedWorkload(WorkloadSpec):
    type: Literal["paced"]
    size_bytes: Positive
    rate_mbps: Positive


def overlay(world, s, w, demand):
    t0 = world.env.now
    yield from open_session(world, s, demand, CHUNK_BYTES)
    flow = OverlayFlow(world, s, w.size_bytes, w.rate_mbps)
    t_first = world.env.now
    yield flow.start().done
    flow.finish()
    world.control.send(SessionClosed(s.id))
    now = world.env.now
    record_transfer(world, s, w.size_bytes, t0, t_first,
                    {sub: now + flow.last_byte_s(sub) for sub in s.subscribers})


def direct(world, s, w, demand):
    t0 = world.env.now
    flow = DirectFlow(world, s.publisher, s.subscribers[0], w.size_bytes, w.rate_mbps)
    yield world.env.timeout(flow.conn.handshake_s)
    t_first = world.env.now
    yield flow.start().done
    record_transfer(world, s, w.size_bytes, t0, t_first,
                    {s.subscribers[0]: world.env.now + flow.conn.rtt_ms / 2e3})


def schedule(w):
    n = max(1, math.ceil(w.size_bytes / CHUNK_BYTES))
    gap_s = CHUNK_BYTES * 8 / (w.rate_mbps * 1e6)
    return [Message(i, max(HEADER.size, CHUNK_BYTES), i * gap_s) for i in range(n)]


def emu_rows(s, w, pub, subs):
    return [Sample(sub["subscriber"], "completion_s", sub["last_t"] - sub["first_pub_t"]) for sub in subs]


KIND = register(WorkloadKind(
    spec=PacedWorkload, metrics=("completion_s", "throughput_mbps", "mean_rate_mbps"),
    rate_cap_mbps=lambda session, w, net: w.rate_mbps,
    simulate_overlay=overlay, simulate_direct=direct, schedule=schedule, emu_rows=emu_rows,
    scaled=lambda w, rate_scale, size_scale: w.model_copy(update={"rate_mbps": w.rate_mbps * rate_scale})))
