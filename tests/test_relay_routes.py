"""Sessions across route changes, with real relays: publishers of one topic at several relays,
a running stream moved to another route, a publisher that leaves with frames still queued.

The last two need frames in flight when the tables change; on loopback that takes a stalled
subscriber (queues fill hop by hop back to the publisher) and a pause longer than the relays'
hold of unrouted frames (`ROUTE_WAIT_S`, 2 s) before the subscriber reads again: a relay that
dropped the old route would have given those frames up by then.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from relaynet import Overlay
from test_relay_backpressure import read_all, stalled_subscriber

from stemflow.client import connect
from stemflow.protocol import FrameDecoder, FrameType
from stemflow.relay.sessions import ROUTE_WAIT_S

pytestmark = pytest.mark.timeout(90)

FRAME_BYTES = 64 << 10


def counters(st: dict, name: str) -> int:
    return sum(r["counters"].get(name, 0) for r in st["reports"].values())


def test_a_topic_published_at_two_relays_reaches_every_subscriber_from_both(tmp_path):
    o = Overlay(tmp_path, ["a", "b", "c"], "direct_hop")
    per_pub = 200

    async def run() -> dict[str, list]:
        subs = {}
        for dc in ("a", "b", "c"):
            c = await connect(o.addr[dc])
            subs[dc] = (c, await c.subscribe("t"))
        pubs = {dc: await connect(o.addr[dc]) for dc in ("a", "b")}
        streams = {dc: p.open_stream("t") for dc, p in pubs.items()}
        for s in streams.values():
            await s.drain()
        # one session per ingress relay, each to the two other relays
        await asyncio.to_thread(o.wait_status, lambda st: sorted(
            (x["id"], len(x["sinks"])) for x in st["sessions"] if x["topic"] == "t" and x["rate_mbps"])
            == [("t@a", 2), ("t@b", 2)])
        await asyncio.sleep(0.1)

        async def collect(sub) -> list:
            return [await sub.get(15) for _ in range(2 * per_pub)]

        collecting = asyncio.gather(*(collect(s) for _, s in subs.values()))
        for i in range(per_pub):
            for dc, s in streams.items():
                await s.write(f"{dc}:{i}".encode())
        got = await collecting
        for c in [*pubs.values(), *(c for c, _ in subs.values())]:
            await c.close()
        return dict(zip(subs, got, strict=True))

    try:
        got = asyncio.run(run())
        for dc, msgs in got.items():
            by_pub: dict[str, list[int]] = {}
            for m in msgs:
                pub, i = m.data.decode().split(":")
                by_pub.setdefault(pub, []).append(int(i))
            # every message of each publisher, exactly once and in its order
            assert by_pub == {"a": list(range(per_pub)), "b": list(range(per_pub))}, dc
    finally:
        o.close()


async def _publish(o: Overlay, topic: str, frames: int) -> tuple:
    pub = await connect(o.addr["a"])
    stream = pub.open_stream(topic)
    await stream.drain()
    await asyncio.to_thread(o.wait_session, topic)

    async def send() -> None:
        for i in range(frames):
            await stream.write(i.to_bytes(4, "big") + bytes(FRAME_BYTES - 4))
        await stream.drain()

    return pub, asyncio.create_task(send())


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_stream_moved_to_another_route_loses_nothing(tmp_path, loop):
    """Make-before-break: frames already on the old route finish it while new ones take the new."""
    o = Overlay(tmp_path, ["a", "b", "m1", "m2"], "detour_on_request", loop=loop)
    frames = 3200  # 200 MiB: more than the queues and socket buffers on one route can hold,
    # so the publisher is still sending when the route moves, and the old route is full
    sub = stalled_subscriber(o.addr["b"], "moving")

    async def run() -> list[int]:
        pub, sending = await _publish(o, "moving", frames)
        await asyncio.sleep(1.0)  # queues fill back to the publisher
        before = o.status()["version"]
        # another session: a re-plan, which moves "moving" from m1 to m2
        extra_sub = await connect(o.addr["b"])
        await extra_sub.subscribe("detour")
        extra_pub = await connect(o.addr["a"])
        extra_pub.open_stream("detour")
        await asyncio.to_thread(o.wait_status, lambda st: st["version"] > before)
        await asyncio.sleep(ROUTE_WAIT_S + 1.0)  # past the hold of frames without a route
        got = await asyncio.to_thread(read_all, sub, frames)
        await asyncio.wait_for(sending, 30)
        for c in (pub, extra_sub, extra_pub):
            await c.close()
        return got

    try:
        seqs = asyncio.run(run())
        missing = sorted(set(range(frames)) - set(seqs))
        assert seqs == list(range(frames)), (len(seqs), missing[:5], len(missing), {
            k: v for r in o.status()["reports"].values() for k, v in r["counters"].items()
            if k.startswith(("reorder", "pending", "late", "no_"))})
        def via(st: dict) -> dict[str, int]:
            return {m: sum(x["bytes_sent"] for x in st["reports"][m]["links"] if x["peer"] == "b")
                    for m in ("m1", "m2")}

        # the stream did cross both middles (reports come every interval: wait for the last)
        st = o.wait_status(lambda st: sum(via(st).values()) >= frames * FRAME_BYTES)
        assert all(v > 0 for v in via(st).values()), via(st)
        assert counters(st, "reorder_skipped") == counters(st, "pending_expired") == 0
    finally:
        sub.close()
        o.close()


def read_slowly(s, count: int, chunk: int = 256 << 10, pause_s: float = 0.02) -> list[int]:
    """Frames until `count` arrived or nothing came for 10 s, at about 12 MiB/s: queues stay
    full for seconds, long after the publisher's relay has read the whole stream."""
    dec, seqs = FrameDecoder(), []
    s.settimeout(10.0)
    while len(seqs) < count:
        try:
            data = s.recv(chunk)
        except TimeoutError:
            break
        if not data:
            break
        seqs += [f.seq for f in dec.receive_data(data) if f.type is FrameType.DATA]
        time.sleep(pause_s)
    return seqs


def test_a_publisher_that_leaves_does_not_take_its_queued_frames_along(tmp_path):
    # Through a middle relay: the last relay delivers frames of its subscribers' topics even
    # without an entry, but a relay in the middle needs the route.
    o = Overlay(tmp_path, ["a", "b", "m1"], "via_middle", parallel=1)
    frames = 600  # 38 MiB: more than the queues and socket buffers from m1 on can hold
    sub = stalled_subscriber(o.addr["b"], "leaving")

    async def run() -> list[int]:
        pub, sending = await _publish(o, "leaving", frames)
        reading = asyncio.create_task(asyncio.to_thread(read_slowly, sub, frames))
        await asyncio.wait_for(sending, 60)
        closing = asyncio.create_task(pub.close())  # leaves once its relay has read it all
        # the session ends while the slow subscriber still has megabytes queued for it
        await asyncio.to_thread(o.wait_status, lambda st: not any(
            x["topic"] == "leaving" for x in st["sessions"]), 30)
        got = await reading
        await closing
        return got

    try:
        assert asyncio.run(run()) == list(range(frames))
    finally:
        sub.close()
        o.close()
