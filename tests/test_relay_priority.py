"""Priority classes with real relays: a delay-sensitive message overtakes a queued bulk stream."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from relaynet import Overlay

from stemflow.client import connect

pytestmark = pytest.mark.timeout(60)

BULK_FRAMES = 96
"""6 MiB: below the outbox high-water mark, so a never pauses the bulk publisher and holds the
whole backlog beyond what the frozen hop's socket buffers take."""
FRAME_BYTES = 64 << 10


async def overtake(o: Overlay) -> list[str]:
    """Queue a bulk backlog on the hop a->b (b frozen), then publish one delay-sensitive message.

    Returns the order in which one subscriber at b receives them ("B" bulk, "D" the message).
    """
    sub_c = await connect(o.addr["b"])
    bulk_sub = await sub_c.subscribe("bulk")
    ds_sub = await sub_c.subscribe("ds")
    bulk_pub = await connect(o.addr["a"])
    ds_pub = await connect(o.addr["a"])
    bulk = bulk_pub.open_stream("bulk")
    ds = ds_pub.open_stream("ds", delay_sensitive=True)
    await bulk.drain()
    await ds.drain()
    await asyncio.to_thread(o.wait_session, "bulk")
    await asyncio.to_thread(o.wait_session, "ds")
    order: list[str] = []

    async def receive(sub, tag: str) -> None:
        async for _ in sub:
            order.append(tag)

    tasks = [asyncio.create_task(receive(bulk_sub, "B")), asyncio.create_task(receive(ds_sub, "D"))]
    os.kill(o.procs["b"].pid, signal.SIGSTOP)  # b stops reading: a's queue to b builds up
    try:
        for i in range(BULK_FRAMES):
            await bulk.write(i.to_bytes(4, "big") + bytes(FRAME_BYTES - 4))
        await asyncio.sleep(0.4)  # a has read the whole backlog
        await ds.write(b"urgent")
        await ds.drain()
        await asyncio.sleep(0.1)
    finally:
        os.kill(o.procs["b"].pid, signal.SIGCONT)
    t_last = time.monotonic()
    n = 0
    while time.monotonic() - t_last < 1.0:
        await asyncio.sleep(0.1)
        if len(order) != n:
            n, t_last = len(order), time.monotonic()
    for t in tasks:
        t.cancel()
    for c in (sub_c, bulk_pub, ds_pub):
        await c.close()
    return order


def test_delay_sensitive_message_overtakes_bulk_backlog_on_the_same_hop(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", parallel=1)
    try:
        order = asyncio.run(overtake(o))
        assert order.count("D") == 1
        bulk_after = len(order) - 1 - order.index("D")
        # Everything bulk was already queued at a when the message arrived there; a FIFO hop
        # would deliver it last. It may only wait for what the kernel's socket buffers held.
        assert bulk_after >= 16, (order.index("D"), bulk_after)
        assert order.count("B") == BULK_FRAMES  # reliable: nothing lost while queued
    finally:
        o.close()
