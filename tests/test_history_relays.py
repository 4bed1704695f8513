"""Topic history through real relay processes (`stemflow relay --history`): a subscriber asks for
the past at the relay that delivered the topic, at a relay that never did (its peers answer), and
after the relay that kept it died; a topic no rule names is refused in one line."""

from __future__ import annotations

import asyncio
import sys

import pytest
from relaynet import ROOT, Overlay

from stemflow.client import ClientError, connect
from stemflow.relay.history import QUERY_TIMEOUT_S

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def overlay(tmp_path):
    o = Overlay(tmp_path, ["a", "b", "c"], "direct_hop", relay_args=("--history", "room.*=4"))
    yield o
    o.close()


async def _publish_while_b_reads(o: Overlay, topic: str, n: int):
    """`n` messages published at a, delivered to a subscriber at b (so relay b keeps them)."""
    reader = await connect(o.addr["b"])
    live = await reader.subscribe(topic)
    writer = await connect(o.addr["a"])
    await writer.publish(topic, b"m0")  # held at a until the table routes the session
    await asyncio.to_thread(o.wait_session, topic)
    for i in range(1, n):
        await writer.publish(topic, f"m{i}".encode())
    assert [(await live.get(5)).data for _ in range(n)] == [f"m{i}".encode() for i in range(n)]
    return reader, writer


def test_the_past_first_then_live_and_only_what_the_rule_keeps(overlay):
    async def run():
        reader, writer = await _publish_while_b_reads(overlay, "room.x", 6)
        late = await connect(overlay.addr["b"])
        sub = await late.subscribe("room.x", history=3)
        assert len(sub.history) == 3
        await writer.publish("room.x", b"live")
        got = [await sub.get(5) for _ in range(4)]
        assert [(m.data, m.history) for m in got] == [(b"m3", True), (b"m4", True), (b"m5", True),
                                                      (b"live", False)]
        more = await late.subscribe("room.x", history=100)  # asks more than the rule keeps: 4
        assert len(more.history) == 4
        assert [(await more.get(5)).data for _ in range(4)] == [b"m3", b"m4", b"m5", b"live"]
        two, three = await asyncio.gather(late.subscribe("room.x", history=2),
                                          late.subscribe("room.x", history=3))  # one at a time
        assert [m.data for m in two.history] == [b"m5", b"live"]
        assert [m.data for m in three.history] == [b"m4", b"m5", b"live"]
        assert late._history_turn == {}
        for c in (reader, writer, late):
            await c.close()
    asyncio.run(run())


def test_a_relay_that_never_delivered_the_topic_asks_its_peers(overlay):
    async def run():
        reader, writer = await _publish_while_b_reads(overlay, "room.y", 3)
        elsewhere = await connect(overlay.addr["c"])
        sub = await elsewhere.subscribe("room.y", history=10)
        assert [(m.data, m.history) for m in [await sub.get(5) for _ in range(len(sub.history))]] == [
            (b"m0", True), (b"m1", True), (b"m2", True)]
        for c in (reader, writer, elsewhere):
            await c.close()
    asyncio.run(run())


def test_history_outlives_a_dead_relay_while_another_that_delivered_the_topic_lives(overlay):
    async def run():
        local = await connect(overlay.addr["a"])  # relay a delivers the topic too: it keeps a copy
        await local.subscribe("room.z")
        reader, writer = await _publish_while_b_reads(overlay, "room.z", 3)
        overlay.kill("b")
        late = await connect(overlay.addr["c"])  # c never delivered room.z: it asks a (and b, dead)
        t0 = asyncio.get_running_loop().time()
        sub = await late.subscribe("room.z", history=10)
        assert [(await sub.get(5)).data for _ in range(len(sub.history))] == [b"m0", b"m1", b"m2"]
        assert asyncio.get_running_loop().time() - t0 < 2 * QUERY_TIMEOUT_S
        for c in (local, reader, writer, late):
            await c.close()
    asyncio.run(run())


def test_a_topic_no_rule_names_is_refused_with_the_reason(overlay):
    async def run():
        c = await connect(overlay.addr["a"])
        with pytest.raises(ClientError, match="keeps no history of topic 'news'.*--history"):
            await c.subscribe("news", history=5)
        sub = await c.subscribe("news")  # the connection is still good
        assert sub.history == []
        await c.close()
    asyncio.run(run())


def test_stemflow_sub_prints_the_past_first(overlay):
    async def run():
        reader, writer = await _publish_while_b_reads(overlay, "room.cli", 2)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stemflow.cli", "sub", "--relay", overlay.addr["b"], "--history", "5",
            "--count", "3", "room.cli", stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        await asyncio.to_thread(overlay.wait_status, lambda s: any(
            i["topic"] == "room.cli" and i["subscribers"] >= 2 for i in s["reports"]["b"]["interest"]))
        await writer.publish("room.cli", b"new")
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert out.splitlines() == [b"m0", b"m1", b"new"]
        for c in (reader, writer):
            await c.close()
    asyncio.run(run())
