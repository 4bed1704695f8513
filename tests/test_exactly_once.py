"""Exactly once through relay failures, with real processes on loopback (issue 15).

A reliable stream of numbered messages goes a -> m1 -> b. The test kills -9 the middle relay,
then the ingress relay (the publisher reconnects to b), then cuts the subscriber's connection to
its relay (a TCP proxy in between drops it; the subscriber reconnects and resumes from b's
history). Every message must arrive exactly once, in order, and delivery must resume within 2 s
of each fault.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from faultcheck import Proxy
from relaynet import Overlay

from stemflow.client import connect

pytestmark = pytest.mark.timeout(90)

TOPIC = "e2e"
EVERY_S = 0.004
FAULTS_AT_S = (1.0, 3.0, 5.0)
RUN_S = 7.0


async def _run(o: Overlay) -> tuple[list[tuple[float, int]], int, list[float], dict]:
    proxy = Proxy(o.addr["b"])
    via = await proxy.start()
    sub_c = await connect(via, reconnect=True)
    sub = await sub_c.subscribe(TOPIC)
    pub = await connect(o.addr["a"], reconnect=True, fallback=[o.addr["b"]])
    assert pub.acks
    stream = pub.open_stream(TOPIC)
    await stream.drain()
    await asyncio.to_thread(o.wait_session, TOPIC)
    got: list[tuple[float, int]] = []

    async def receive() -> None:
        async for m in sub:
            got.append((time.monotonic(), int.from_bytes(m.data[:4], "big")))

    rx = asyncio.create_task(receive())
    loop = asyncio.get_running_loop()
    faults = [lambda: o.kill("m1"), lambda: o.kill("a"), lambda: loop.call_soon_threadsafe(proxy.drop)]
    fired: list[float] = []
    pending = []
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < RUN_S:
        if len(fired) < len(faults) and time.monotonic() - t0 >= FAULTS_AT_S[len(fired)]:
            fired.append(time.monotonic())
            pending.append(loop.run_in_executor(None, faults[len(fired) - 1]))
        await stream.write(sent.to_bytes(4, "big") + bytes(200))
        sent += 1
        await asyncio.sleep(EVERY_S)
    await asyncio.gather(*pending)
    await asyncio.wait_for(pub.flush(), 15)  # every message acknowledged end to end
    deadline = time.monotonic() + 5
    while len(got) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # duplicates, if any, would come now
    rx.cancel()
    stats = {"pub_reconnects": pub.reconnects, "sub_reconnects": sub_c.reconnects,
             "resume_gaps": sub_c.resume_gaps}
    await pub.close()
    await sub_c.close()
    proxy.close()
    return got, sent, fired, stats


def test_every_message_once_in_order_through_three_faults(tmp_path):
    o = Overlay(tmp_path, ["a", "m1", "b"], "via_middle", relay_args=("--history", f"{TOPIC}=10000"))
    try:
        got, sent, fired, stats = asyncio.run(_run(o))
        values = [v for _, v in got]
        missing = sorted(set(range(sent)) - set(values))
        assert values == list(range(sent)), (
            f"{len(values)} of {sent} received, {len(values) - len(set(values))} duplicates, "
            f"missing {missing[:20]}, stats {stats}\n{o.logs()}")
        assert stats == {"pub_reconnects": 1, "sub_reconnects": 1, "resume_gaps": 0}
        for at in fired:  # delivery resumes within 2 s of each fault
            after = [t for t, _ in got if t > at]
            assert after and after[0] - at < 2.0
        times = [t for t, _ in got]
        assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 2.0
    finally:
        o.close()


async def _run_pattern(o: Overlay) -> tuple[dict[str, list[int]], dict[str, int], dict]:
    proxy = Proxy(o.addr["b"])
    sub_c = await connect(await proxy.start(), reconnect=True)
    sub = await sub_c.subscribe("room.*")
    pub = await connect(o.addr["a"], reconnect=True)
    streams = {t: pub.open_stream(t) for t in ("room.x", "room.y")}
    for s in streams.values():
        await s.drain()
    await asyncio.to_thread(o.wait_session, "room.x")
    got: dict[str, list[int]] = {t: [] for t in streams}

    async def receive() -> None:
        async for m in sub:
            got[m.topic].append(int.from_bytes(m.data[:4], "big"))

    rx = asyncio.create_task(receive())
    sent = dict.fromkeys(streams, 0)
    t0 = time.monotonic()
    cut = False
    while time.monotonic() - t0 < 3.0:
        if not cut and time.monotonic() - t0 >= 1.0:
            proxy.drop()
            cut = True
        # room.x runs ahead of room.y: a resume that mixed the topics' sequence numbers would
        # take room.y's next messages for ones it already had
        for topic, n in (("room.x", 3), ("room.y", 1)):
            for _ in range(n):
                await streams[topic].write(sent[topic].to_bytes(4, "big") + bytes(100))
                sent[topic] += 1
        await asyncio.sleep(EVERY_S)
    await asyncio.wait_for(pub.flush(), 15)
    deadline = time.monotonic() + 5
    while sum(map(len, got.values())) < sum(sent.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    rx.cancel()
    stats = {"sub_reconnects": sub_c.reconnects, "resume_gaps": sub_c.resume_gaps}
    await pub.close()
    await sub_c.close()
    proxy.close()
    return got, sent, stats


def test_a_pattern_subscription_resumes_each_topic_from_its_history(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", relay_args=("--history", "room.>=10000"))
    try:
        got, sent, stats = asyncio.run(_run_pattern(o))
        for topic, n in sent.items():
            assert got[topic] == list(range(n)), (
                f"{topic}: {len(got[topic])} of {n}, missing {sorted(set(range(n)) - set(got[topic]))[:20]}, "
                f"stats {stats}")
        assert stats == {"sub_reconnects": 1, "resume_gaps": 0}
    finally:
        o.close()
