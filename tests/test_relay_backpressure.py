"""Bounded memory with real relays: a stalled subscriber costs a live stream its oldest frames
(counted) and pauses a reliable stream's publisher, hop by hop, until it reads again."""

from __future__ import annotations

import asyncio
import socket

import pytest
from relaynet import RELAY_LOOPS, Overlay

from stemflow.client import connect
from stemflow.protocol import FrameDecoder, FrameType, encode, encode_json, session_id

pytestmark = pytest.mark.timeout(60)

FRAME_BYTES = 64 << 10
FRAMES = 600  # 38 MiB: far more than the relays keep for one live destination
RELIABLE_FRAMES = 3200
"""200 MiB: more than the relays' queues (8 MiB per destination) plus every kernel socket
buffer on the way (each TCP receive buffer may autotune up to 32 MiB here) can hold."""


def stalled_subscriber(addr: str, topic: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # keep the kernel's share small
    s.sendall(encode_json(FrameType.HELLO, {"role": "client"})
              + encode(FrameType.SUBSCRIBE, topic.encode(), session=session_id(topic)))
    return s


def read_all(s: socket.socket, count: int, quiet_s: float = 10.0) -> list[int]:
    """Frames until `count` arrived or nothing came for `quiet_s`."""
    dec, seqs = FrameDecoder(), []
    s.settimeout(quiet_s)
    while len(seqs) < count:
        try:
            data = s.recv(1 << 20)
        except TimeoutError:
            break
        if not data:
            break
        seqs += [f.seq for f in dec.receive_data(data) if f.type is FrameType.DATA]
    return seqs


def live_drops(st: dict) -> int:
    """Every live frame lost on the way: dropped at a subscriber's queue, or skipped as a reorder
    gap at the egress relay. A frame a full peer queue dropped (its oldest live frames go first)
    is one such gap, so the links' `dropped_frames` are not added again."""
    return sum(report["counters"].get("subscriber_dropped", 0)
               + report["counters"].get("reorder_skipped", 0) for report in st["reports"].values())


async def publish_live(o: Overlay, topic: str, s: socket.socket) -> tuple[int, list[int]]:
    """Publish FRAMES on a live stream, then let the stalled subscriber `s` read while the
    publisher stays (its leaving would end the session and its queued frames with it); return
    how many frames the client got onto the wire and the sequence numbers the subscriber got."""
    pub = await connect(o.addr["a"])
    stream = pub.open_stream(topic, reliable=False)
    await stream.drain()
    await asyncio.to_thread(o.wait_session, topic)
    sent = 0
    for i in range(FRAMES):
        await stream.write(i.to_bytes(4, "big") + bytes(FRAME_BYTES - 4))
        sent += 1
    await asyncio.to_thread(o.wait_status, lambda x: live_drops(x) > 0)
    seqs = await asyncio.to_thread(read_all, s, FRAMES, 3.0)
    await pub.close()
    return sent, seqs


@pytest.mark.parametrize("loop", RELAY_LOOPS)
def test_live_stream_drops_oldest_frames_for_a_stalled_subscriber(tmp_path, loop):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", loop=loop)
    try:
        s = stalled_subscriber(o.addr["b"], "live")
        sent, seqs = asyncio.run(publish_live(o, "live", s))
        assert sent == FRAMES  # a live publisher is never paused
        assert seqs == sorted(seqs) and len(seqs) < FRAMES
        # no frame waits longer than LIVE_MAX_WAIT_S in a relay queue: the subscriber, stalled
        # for seconds, gets what its kernel buffers held, and every other frame is counted
        # every lost frame is counted somewhere (reports arrive each interval: wait for the last)
        st = o.wait_status(lambda x: len(seqs) + live_drops(x) >= FRAMES)
        assert len(seqs) + live_drops(st) == FRAMES
        # a live frame a full peer queue dropped is one the egress relay skipped as a gap
        link_drops = sum(link.get("dropped_frames", 0) for link in st["reports"]["a"]["links"])
        assert link_drops <= st["reports"]["b"]["counters"].get("reorder_skipped", 0)
        s.close()
    finally:
        o.close()


@pytest.mark.parametrize("loop", RELAY_LOOPS)
def test_reliable_stream_pauses_the_publisher_until_the_subscriber_reads(tmp_path, loop):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", parallel=1, loop=loop)

    async def scenario(s: socket.socket) -> tuple[int, int, list[int]]:
        pub = await connect(o.addr["a"])
        stream = pub.open_stream("reliable", reliable=True)
        await stream.drain()
        await asyncio.to_thread(o.wait_session, "reliable")
        sent = 0

        async def run() -> None:
            nonlocal sent
            for i in range(RELIABLE_FRAMES):
                await stream.write(i.to_bytes(4, "big") + bytes(FRAME_BYTES - 4))
                sent += 1

        task = asyncio.create_task(run())
        await asyncio.sleep(2.5)
        before = sent
        await asyncio.sleep(0.5)
        paused_at = sent
        seqs = await asyncio.to_thread(read_all, s, RELIABLE_FRAMES)  # the subscriber wakes up
        await task
        await pub.close()
        return before, paused_at, seqs

    try:
        s = stalled_subscriber(o.addr["b"], "reliable")
        before, paused_at, seqs = asyncio.run(scenario(s))
        assert before == paused_at < RELIABLE_FRAMES  # the publisher was held, not just slow
        assert seqs == list(range(RELIABLE_FRAMES))  # and then resumed, losing nothing
        s.close()
    finally:
        o.close()


def test_reliable_frames_published_before_the_plan_pause_the_publisher_not_drop(tmp_path):
    # the fresh controller holds its tables back for 1.5 s: a publisher that starts at once
    # meets an ingress with no route for longer than it may buffer (PENDING_MAX_BYTES)
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", grace_s=1.5)
    n = 256  # 16 MiB

    async def scenario() -> list[int]:
        sub_c = await connect(o.addr["b"])
        sub = await sub_c.subscribe("early")
        pub = await connect(o.addr["a"])
        stream = pub.open_stream("early", reliable=True)

        async def collect() -> list[int]:
            return [int.from_bytes((await sub.get(15)).data[:4], "big") for _ in range(n)]

        collecting = asyncio.ensure_future(collect())
        for i in range(n):
            await stream.write(i.to_bytes(4, "big") + bytes(FRAME_BYTES - 4))
        got = await collecting
        await pub.close()
        await sub_c.close()
        return got

    try:
        assert asyncio.run(scenario()) == list(range(n))
        st = o.wait_status(lambda s: "a" in s["reports"])
        assert st["reports"]["a"]["counters"].get("pending_expired", 0) == 0
    finally:
        o.close()
