"""Multipath splits, multicast trees and striping over parallel connections, with real relays."""

from __future__ import annotations

import asyncio

import pytest
from relaynet import RELAY_LOOPS, Overlay

from stemflow.client import connect

pytestmark = pytest.mark.timeout(60)


def link(st: dict, relay: str, peer: str) -> dict:
    links = st["reports"].get(relay, {}).get("links", [])
    return next((x for x in links if x["peer"] == peer), {"bytes_sent": 0, "conn_bytes": []})


def counter(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


async def stream_to(o: Overlay, src: str, sinks: list[str], topic: str, sizes: list[int]) -> list[list]:
    subs = []
    for dst in sinks:
        c = await connect(o.addr[dst])
        subs.append((c, await c.subscribe(topic)))
    pub = await connect(o.addr[src])
    stream = pub.open_stream(topic)
    await stream.drain()
    o.planned = await asyncio.to_thread(o.wait_session, topic, len(sinks))

    async def collect(sub) -> list:
        return [await sub.get(15) for _ in sizes]

    collecting = asyncio.gather(*(collect(s) for _, s in subs))  # read while we publish
    for i, size in enumerate(sizes):
        await stream.write(counter(i, size))
    got = await collecting
    for c, _ in subs:
        await c.close()
    await pub.close()
    return got


def test_multipath_split_follows_weights_and_keeps_order(tmp_path):
    o = Overlay(tmp_path, ["a", "b", "m1", "m2"], "split_70_30")
    try:
        sizes = [1024 + 997 * (i % 17) for i in range(3000)]  # mixed sizes: shares are in bytes
        (got,) = asyncio.run(stream_to(o, "a", ["b"], "mp", sizes))
        assert [int.from_bytes(m.data[:4], "big") for m in got] == list(range(len(sizes)))
        total = sum(sizes) + 24 * len(sizes)
        st = o.wait_status(lambda s: link(s, "a", "m1")["bytes_sent"]
                           + link(s, "a", "m2")["bytes_sent"] >= total)
        via1, via2 = link(st, "a", "m1")["bytes_sent"], link(st, "a", "m2")["bytes_sent"]
        share = via1 / (via1 + via2)
        assert abs(share - 0.7) <= 0.05 * 0.7, (via1, via2)
        assert link(st, "a", "b")["bytes_sent"] == 0
        # the middle relays carried what a sent them, on to b
        st = o.wait_status(lambda s: link(s, "m1", "b")["bytes_sent"] == via1
                           and link(s, "m2", "b")["bytes_sent"] == via2)
    finally:
        o.close()


@pytest.mark.parametrize("loop", RELAY_LOOPS)
def test_multicast_to_three_relays_exactly_once_in_order(tmp_path, loop):
    o = Overlay(tmp_path, ["a", "b", "c", "d"], "two_trees", loop=loop)
    try:
        n = 1500
        got = asyncio.run(stream_to(o, "a", ["b", "c", "d"], "mc", [2048] * n))
        for msgs in got:
            assert [int.from_bytes(m.data[:4], "big") for m in msgs] == list(range(n))
            assert [m.seq for m in msgs] == list(range(n))
        assert len(o.planned["plan"]["trees"]["mc"]) == 2
        # both trees carried frames: a sent to every sink (star) and b forwarded to c (chain)
        o.wait_status(lambda s: all(link(s, "a", x)["bytes_sent"] > 0 for x in "bcd")
                      and link(s, "b", "c")["bytes_sent"] > 0)
    finally:
        o.close()


@pytest.mark.parametrize("loop", RELAY_LOOPS)
def test_order_preserved_when_striped_over_four_connections(tmp_path, loop):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", parallel=4, loop=loop)
    try:
        # 200 MB: seconds of continuous reordering, long past REORDER_TIMEOUT_S
        sizes = [1024] * 4000 + [65536] * 3000 + [100] * 2000
        (got,) = asyncio.run(stream_to(o, "a", ["b"], "stripe", sizes))
        assert [int.from_bytes(m.data[:4], "big") for m in got] == list(range(len(sizes)))
        assert [len(m.data) for m in got] == sizes
        st = o.wait_status(lambda s: link(s, "a", "b")["bytes_sent"] >= sum(sizes))
        per_conn = link(st, "a", "b")["conn_bytes"]
        assert len(per_conn) == 4 and all(b > 0 for b in per_conn), per_conn
        counters = st["reports"]["b"]["counters"]
        assert counters.get("held_out_of_order", 0) > 0  # the frames really were striped
        assert counters.get("reorder_skipped", 0) == counters.get("late_frames", 0) == 0
    finally:
        o.close()


@pytest.mark.parametrize("strategy", ["multipath", "multicast"])
def test_builtin_strategies_drive_real_relays(tmp_path, strategy):
    o = Overlay(tmp_path, ["a", "b", "c", "d"], strategy, builtin=True)
    try:
        got = asyncio.run(stream_to(o, "a", ["b", "c", "d"], "mc", [2048] * 300))
        for msgs in got:
            assert [int.from_bytes(m.data[:4], "big") for m in msgs] == list(range(300))
        (got,) = asyncio.run(stream_to(o, "b", ["d"], "uc", [2048] * 300))
        assert [int.from_bytes(m.data[:4], "big") for m in got] == list(range(300))
    finally:
        o.close()
