"""Unicast through real relay processes: unary and streaming, 2 and 3 relays, P=4 striping."""

from __future__ import annotations

import asyncio

import pytest
from relaynet import Overlay

from stemflow import eventloop
from stemflow.client import connect

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def overlay(request, tmp_path):
    dcs, strategy = request.param
    o = Overlay(tmp_path, dcs, strategy)
    yield o
    o.close()


async def _unary_and_stream(o: Overlay, src: str, dst: str, topic: str, n: int, size: int) -> list:
    sub_c = await connect(o.addr[dst])
    sub = await sub_c.subscribe(topic)
    pub_c = await connect(o.addr[src])
    await pub_c.publish(topic, b"unary-0")  # acked by the ingress relay even before the plan
    await asyncio.to_thread(o.wait_session, topic)
    first = await sub.get(5)
    stream = pub_c.open_stream(topic)
    for i in range(n):
        await stream.write(i.to_bytes(4, "big") * (size // 4))
    got = [first] + [await sub.get(10) for _ in range(n)]
    await pub_c.close()
    await sub_c.close()
    return got


@pytest.mark.parametrize("overlay", [(["a", "b"], "direct_hop")], indirect=True)
def test_unary_and_streaming_through_two_relays(overlay):
    got = asyncio.run(_unary_and_stream(overlay, "a", "b", "t2", 300, 1024))
    assert got[0].data == b"unary-0"
    assert [int.from_bytes(m.data[:4], "big") for m in got[1:]] == list(range(300))
    assert [m.seq for m in got] == list(range(301))
    overlay.wait_status(lambda s: any(link["peer"] == "b" and link["bytes_sent"] > 300 * 1024
                                      for link in s["reports"]["a"]["links"]))


@pytest.mark.parametrize("overlay", [(["a", "b", "m1"], "via_middle")], indirect=True)
def test_unary_and_streaming_through_three_relays(overlay):
    got = asyncio.run(_unary_and_stream(overlay, "a", "b", "t3", 300, 4096))
    assert [int.from_bytes(m.data[:4], "big") for m in got[1:]] == list(range(300))
    st = overlay.wait_status(lambda s: "m1" in s["reports"] and any(
        link["peer"] == "b" and link["bytes_sent"] >= 300 * 4096 for link in s["reports"]["m1"]["links"]))
    a_to_b = [x for x in st["reports"]["a"]["links"] if x["peer"] == "b"][0]
    assert a_to_b["bytes_sent"] == 0  # everything went through m1


@pytest.mark.parametrize("overlay", [(["a", "b"], "direct_hop")], indirect=True)
def test_client_runs_on_uvloop(overlay):
    """uvloop's transports are not subclasses of asyncio.Transport; the client must not care."""
    pytest.importorskip("uvloop")
    got = eventloop.run(_unary_and_stream(overlay, "a", "b", "uv", 300, 1024), "uvloop")
    assert got[0].data == b"unary-0"
    assert [int.from_bytes(m.data[:4], "big") for m in got[1:]] == list(range(300))
