"""A reliable bulk session beside an idle live stream, through real relays and the built-in
multipath strategy: a delay-sensitive session without a stated rate must not be planned the
whole link (it gets the controller's default cap), and the bulk session must get a route."""

from __future__ import annotations

import asyncio
import time

import pytest
from relaynet import Overlay

from stemflow.client import connect

pytestmark = pytest.mark.timeout(90)

FRAME = bytes(64 << 10)
SEND_S = 1.5


async def bulk_rate_mbps(o: Overlay, topic: str) -> float:
    """Stream reliable 64 KiB frames a -> b for SEND_S; the rate the subscriber received."""
    sub_c = await connect(o.addr["b"])
    sub = await sub_c.subscribe(topic)
    pub_c = await connect(o.addr["a"])
    stream = pub_c.open_stream(topic)
    await stream.write(FRAME)
    await asyncio.to_thread(o.wait_session, topic)
    got = 0
    first = last = 0.0

    async def receive() -> None:
        nonlocal got, first, last
        async for _ in sub:
            last = time.monotonic()
            first = first or last
            got += 1

    task = asyncio.create_task(receive())
    t0 = time.monotonic()
    while time.monotonic() - t0 < SEND_S:
        await stream.write(FRAME)
    await stream.drain()
    await asyncio.sleep(1.0)
    task.cancel()
    await pub_c.close()
    await sub_c.close()
    return got * len(FRAME) * 8 / max(last - first, 1e-3) / 1e6 if got > 1 else 0.0


def test_bulk_beside_an_idle_live_stream_keeps_most_of_its_rate(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "multipath", builtin=True)
    try:
        async def run() -> tuple[float, float, dict]:
            alone = await bulk_rate_mbps(o, "bulk-alone")
            live_sub_c = await connect(o.addr["b"])
            live_sub = await live_sub_c.subscribe("live")
            live_c = await connect(o.addr["a"])
            live = live_c.open_stream("live", delay_sensitive=True, reliable=False)
            await asyncio.to_thread(o.wait_session, "live")
            for _ in range(10):
                await live.write(bytes(1000))
            for _ in range(10):
                await live_sub.get(5.0)
            beside = await bulk_rate_mbps(o, "bulk-beside")
            st = await asyncio.to_thread(o.status)
            await live_c.close()
            await live_sub_c.close()
            return alone, beside, st

        alone, beside, st = asyncio.run(run())
        print(f"bulk alone {alone:.0f} Mbit/s, beside the live stream {beside:.0f} Mbit/s")
        live = next(s for s in st["sessions"] if s["topic"] == "live")
        assert live["rate_mbps"] <= 25.0  # the default cap of a delay-sensitive session
        counters = {k: v for r in st["reports"].values() for k, v in r["counters"].items()}
        assert counters.get("pending_expired", 0) == 0, counters
        assert beside >= 0.3 * alone, (alone, beside, o.logs())
    finally:
        o.close()
