"""Sessions that share relays do not share each other's trouble (real relays, loopback).

One session's stalled subscriber holds back that session alone: another session on the same
hop and the same peer connections keeps moving; a healthy subscriber of the stalled topic keeps
receiving once the slow one is cut (the `disconnect` policy); a live stream beside a bulk one
stays on time. The speeds these promise are measured in `benchmarks/live_beside_bulk.py` and
`benchmarks/isolation.py`; the bounds here are loose, to catch the mechanism failing (the code
before credit flow control froze the second session entirely), not to time it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from relaynet import Overlay
from test_relay_backpressure import read_all, stalled_subscriber

from stemflow.client import connect

pytestmark = pytest.mark.timeout(90)

FRAME_BYTES = 64 << 10
ROOT = Path(__file__).resolve().parent.parent


async def _bulk(o: Overlay, topic: str, frames: int, sub) -> float:
    """Publish `frames` reliable 64 KiB frames a -> b and read them; their rate in MB/s."""
    pub = await connect(o.addr["a"])
    stream = pub.open_stream(topic)
    await stream.drain()
    await asyncio.to_thread(o.wait_session, topic)
    t0 = time.perf_counter()

    async def send() -> None:
        for i in range(frames):
            await stream.write(i.to_bytes(4, "big") + bytes(FRAME_BYTES - 4))
        await stream.drain()

    sending = asyncio.create_task(send())
    for i in range(frames):
        m = await sub.get(20)
        assert int.from_bytes(m.data[:4], "big") == i
    rate = frames * FRAME_BYTES / 1e6 / (time.perf_counter() - t0)
    await sending
    await pub.close()
    return rate


def test_a_stalled_subscriber_holds_back_its_session_not_another_on_the_same_hop(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", relay_args=("--slow-subscriber", "block"))
    frames = 1600  # 100 MiB

    async def run() -> tuple[float, float, int]:
        reader = await connect(o.addr["b"])
        alone = await _bulk(o, "alone", frames, await reader.subscribe("alone"))
        # "stuck": its only subscriber never reads; its publisher fills every queue it may
        stuck = stalled_subscriber(o.addr["b"], "stuck")
        pub = await connect(o.addr["a"])
        stream = pub.open_stream("stuck")
        await stream.drain()
        await asyncio.to_thread(o.wait_session, "stuck")
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while True:
                await stream.write(bytes(FRAME_BYTES))
                sent += 1

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(1.5)  # long enough for "stuck" to run out of credit
        beside = await _bulk(o, "beside", frames, await reader.subscribe("beside"))
        flooding.cancel()
        stuck.close()
        await reader.close()
        return alone, beside, sent

    try:
        alone, beside, stuck_sent = asyncio.run(run())
        assert stuck_sent * FRAME_BYTES < 200 << 20  # "stuck" really was held back
        assert beside >= 0.5 * alone, (alone, beside)
    finally:
        o.close()


def test_a_healthy_subscriber_gets_everything_while_a_slow_one_of_its_topic_is_cut(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop",
                relay_args=("--slow-subscriber-deadline", "1"))
    frames = 1600  # 100 MiB: far beyond what relays hold for the slow subscriber

    async def run() -> tuple[float, list[int]]:
        slow = stalled_subscriber(o.addr["b"], "shared")
        reader = await connect(o.addr["b"])
        rate = await _bulk(o, "shared", frames, await reader.subscribe("shared"))
        got = await asyncio.to_thread(read_all, slow, frames, 2.0)
        slow.close()
        await reader.close()
        return rate, got

    try:
        _, slow_got = asyncio.run(run())
        assert len(slow_got) < frames and slow_got == list(range(len(slow_got)))
        st = o.wait_status(lambda s: s["reports"]["b"]["counters"].get(
            "slow_subscriber_disconnects", 0) == 1)
        assert st["reports"]["b"]["counters"].get("reorder_skipped", 0) == 0
    finally:
        o.close()


FLOOD = """
import asyncio, sys
from stemflow.client import connect
async def main():
    pub = await connect(sys.argv[1])
    stream = pub.open_stream(sys.argv[2])
    while True:
        await stream.write(bytes(65536))
asyncio.run(main())
"""


def drain_socket(s, stop: threading.Event) -> int:
    """Read and discard until `stop`: a bulk subscriber that costs the test's loop nothing."""
    n = 0
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            data = s.recv(1 << 20)
        except TimeoutError:
            continue
        if not data:
            break
        n += len(data)
    return n


def test_a_live_stream_beside_a_bulk_one_stays_on_time(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    frames, frame_bytes, fps = 60, 20_000, 30

    async def live(sub, stream) -> list[float]:
        delays = []
        for _ in range(frames):
            await stream.write(time.perf_counter_ns().to_bytes(8, "big") + bytes(frame_bytes - 8))
            m = await sub.get(5)
            delays.append((time.perf_counter_ns() - int.from_bytes(m.data[:8], "big")) / 1e6)
            await asyncio.sleep(1 / fps)
        return delays

    async def run() -> tuple[list[float], list[float], int]:
        sub_c = await connect(o.addr["b"])
        sub = await sub_c.subscribe("live")
        pub = await connect(o.addr["a"])
        stream = pub.open_stream("live", reliable=False, delay_sensitive=True)
        await stream.drain()
        await asyncio.to_thread(o.wait_session, "live")
        quiet = await live(sub, stream)
        bulk_sub = stalled_subscriber(o.addr["b"], "bulk")
        stop = threading.Event()
        draining = asyncio.ensure_future(asyncio.to_thread(drain_socket, bulk_sub, stop))
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, o.addr["a"], "bulk"],
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            await asyncio.to_thread(o.wait_session, "bulk")
            await asyncio.sleep(1.0)
            loaded = await live(sub, stream)
        finally:
            flood.kill()
            flood.wait(5)
            stop.set()
        bulk_bytes = await draining
        bulk_sub.close()
        for c in (sub_c, pub):
            await c.close()
        return quiet, loaded, bulk_bytes

    try:
        quiet, loaded, bulk_bytes = asyncio.run(run())
        assert bulk_bytes > 100 << 20  # the bulk session really ran beside the live one
        p90 = statistics.quantiles(loaded, n=10)[-1]
        assert p90 < statistics.median(quiet) + 50, (statistics.median(quiet), p90)
    finally:
        o.close()
