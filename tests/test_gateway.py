"""A gateway process in front of real relays, spoken to by scripted WebSocket clients: what closes
a socket (and only that socket), the counters, and slow browsers on live and reliable topics."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request

import aiohttp
import pytest
from gatewaynet import Gateways, overlay_with_gateways
from relaynet import ROOT, Overlay

from stemflow.client import Message
from stemflow.gateway import envelope, wire
from stemflow.gateway.relaylink import whole_messages
from stemflow.gateway.server import MAX_SUBSCRIPTIONS
from stemflow.gateway.window import LIVE_LAG_BYTES, WINDOW_BYTES
from stemflow.gateway.wire import CloseCode, GatewayOp, MessageFlag, NoticeKind

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with overlay_with_gateways(tmp_path_factory.mktemp("gateway"),
                               relay_args=("--history", "kept.>=50")) as both:
        yield both


def status(g: Gateways, dc: str) -> dict:
    with urllib.request.urlopen(g.url[dc] + "/status", timeout=5) as r:
        return json.load(r)


def wait_interest(o: Overlay, topic: str, dc: str = "b") -> None:
    """Until relay `dc` has reported a subscriber of `topic` to the controller."""
    o.wait_status(lambda s: any(i["topic"] == topic for i in s["reports"].get(dc, {}).get("interest", [])))


class Browser:
    """A scripted client of the gateway format (what stemflow.js does, minus the envelope)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session, self.ws = session, ws

    @classmethod
    async def open(cls, url: str, greet: bool = True) -> Browser:
        session = aiohttp.ClientSession()
        b = cls(session, await session.ws_connect(url, max_msg_size=0))
        if greet:
            await b.send(wire.hello())
            assert (await b.next())[0] is GatewayOp.WELCOME
        return b

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def next(self, timeout_s: float = 10.0):
        msg = await self.ws.receive(timeout_s)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return msg.type, msg
        return wire.decode_gateway(msg.data)

    async def subscribe(self, sub_id: int, topic: str, reliable: bool = True) -> None:
        await self.send(wire.subscribe(sub_id, topic, reliable=reliable))
        assert await self.next() == (GatewayOp.SUBSCRIBED, sub_id)

    async def closed(self) -> tuple[int | None, str]:
        """The close code and reason the gateway gave."""
        while True:
            msg = await self.ws.receive(10)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, (msg.extra or "")

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


def run(coro):
    return asyncio.run(coro)


async def expect_close(url: str, messages: list[bytes], code: int, reason: str, greet: bool = True,
                       text: str | None = None) -> None:
    b = await Browser.open(url, greet)
    try:
        if text is not None:
            await b.ws.send_str(text)
        for m in messages:
            await b.send(m)
        got_code, got_reason = await b.closed()
        assert got_code == code and reason in got_reason, (got_code, got_reason)
    finally:
        await b.close()


@pytest.mark.parametrize("messages, reason", [
    ([b"\x09junk"], "malformed message: unknown op 0x09"),
    ([wire.subscribe(1, "t")[:10]], "malformed message: SUBSCRIBE needs 16 bytes"),
    ([wire.publish(1, "t", b"x")[:6] + b"\x05ab"], "malformed message: PUBLISH topic of 5 bytes runs past"),
])
def test_a_malformed_message_closes_that_socket_with_the_reason(net, messages, reason):
    _, g = net
    before = status(g, "a")["counters"].get("closed_malformed", 0)

    async def go():
        other = await Browser.open(g.ws_url("a"))
        await other.subscribe(1, "survivor")
        await expect_close(g.ws_url("a"), messages, CloseCode.PROTOCOL_ERROR, reason)
        await other.send(wire.ping(42))  # the gateway and its other browsers carry on
        assert (await other.next())[0] is GatewayOp.PONG
        await other.close()
    run(go())
    assert status(g, "a")["counters"]["closed_malformed"] == before + 1


def test_a_text_message_is_not_the_format(net):
    _, g = net
    run(expect_close(g.ws_url("a"), [], CloseCode.UNSUPPORTED_DATA, "binary", text="hello"))


def test_an_oversized_message_closes_that_socket_with_the_reason(net):
    _, g = net
    before = status(g, "a")["counters"].get("closed_oversized", 0)
    big = wire.publish(1, "t", bytes(wire.MAX_WS_MESSAGE_BYTES))
    run(expect_close(g.ws_url("a"), [big], CloseCode.MESSAGE_TOO_BIG,
                     f"exceeds the gateway's limit of {wire.MAX_WS_MESSAGE_BYTES} bytes"))
    assert status(g, "a")["counters"]["closed_oversized"] == before + 1


@pytest.mark.parametrize("messages, greet, reason", [
    ([wire.publish(1, "t", b"x")], False, "out of order: PUBLISH before HELLO"),
    ([wire.hello()], True, "out of order: a second HELLO"),
    ([wire.subscribe(4, "t"), wire.subscribe(4, "u")], True, "subscription id 4, already open"),
    ([wire.unsubscribe(9)], True, "UNSUBSCRIBE of subscription 9, which is not open"),
])
def test_an_out_of_order_message_closes_that_socket(net, messages, greet, reason):
    _, g = net
    before = status(g, "b")["counters"].get("closed_out_of_order", 0)
    run(expect_close(g.ws_url("b"), messages, CloseCode.PROTOCOL_ERROR, reason, greet=greet))
    assert status(g, "b")["counters"]["closed_out_of_order"] == before + 1


def test_a_browser_may_not_open_unbounded_subscriptions(net):
    _, g = net
    many = [wire.subscribe(i, f"t{i % 4}") for i in range(MAX_SUBSCRIPTIONS + 1)]
    run(expect_close(g.ws_url("a"), many, CloseCode.POLICY_VIOLATION, f"more than {MAX_SUBSCRIPTIONS}"))
    assert status(g, "a")["counters"]["closed_too_many"] >= 1


async def across(o: Overlay, g: Gateways, topic: str) -> tuple[Browser, Browser]:
    """A browser on b's gateway subscribed to `topic` (subscription 1), and one on a's to publish."""
    sub = await Browser.open(g.ws_url("b"))
    await sub.subscribe(1, topic)
    pub = await Browser.open(g.ws_url("a"))
    wait_interest(o, topic)
    return sub, pub


def test_publish_is_acknowledged_and_delivered_across_relays(net):
    o, g = net

    async def go():
        sub, pub = await across(o, g, "across")
        await pub.send(wire.publish(77, "across", b"one"))
        await pub.send(wire.publish(0, "across", b"two"))  # no answer asked for
        assert await pub.next() == (GatewayOp.ACK, 77)
        got = [await sub.next(), await sub.next()]
        assert [d.payload for _, d in got] == [b"one", b"two"]
        assert all(op is GatewayOp.MESSAGE and d.sub_id == 1 for op, d in got)
        await sub.close()
        await pub.close()
    run(go())


def test_a_pattern_subscription_says_each_message_s_topic(net):
    o, g = net

    async def go():
        sub, pub = await across(o, g, "room.*")
        for i, topic in enumerate(["room.x", "elsewhere", "room.y", "room.x.deeper"]):
            await pub.send(wire.publish(i + 1, topic, topic.encode()))
            assert await pub.next() == (GatewayOp.ACK, i + 1)
        got = {}
        for _ in range(2):
            op, d = await sub.next()
            assert op is GatewayOp.MESSAGE and d.flags & MessageFlag.TOPIC
            got[d.topic] = d.payload
        assert got == {"room.x": b"room.x", "room.y": b"room.y"}
        with pytest.raises(asyncio.TimeoutError):  # neither "elsewhere" nor two levels down
            await sub.next(timeout_s=1.0)
        await sub.close()
        await pub.close()
    run(go())


def numbered(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


async def paced(pub: Browser, fast: Browser, n: int, frame) -> list[int]:
    """Publish `frame(i)` for i < n as fast as `fast` reads them, never more than 8 ahead
    (a browser that keeps up with its publisher); the numbers `fast` received, in order."""
    got: list[int] = []
    progress = asyncio.Event()

    async def read() -> None:
        while len(got) < n:
            op, d = await fast.next()
            assert op is GatewayOp.MESSAGE, (op, d)
            got.append(int.from_bytes(d.payload[:4], "big"))
            progress.set()
    reader = asyncio.create_task(read())
    for i in range(n):
        while i - len(got) > 8 and not reader.done():
            progress.clear()
            await asyncio.wait_for(progress.wait(), 10)
        await pub.send(frame(i))
    await asyncio.wait_for(reader, 20)
    return got


def test_a_slow_browser_on_a_reliable_topic_is_paused_and_stalls_nobody(net):
    """A browser that stops reading keeps its position; the fast one gets everything meanwhile.
    When the slow one reads again it gets what the window still holds and a GAP notice for the
    rest: received + gap == published, nothing silently lost."""
    o, g = net
    n, size = 96, 512 << 10  # 48 MiB, half again the window

    async def go():
        fast = await Browser.open(g.ws_url("b"))
        slow = await Browser.open(g.ws_url("b"))
        await fast.subscribe(1, "bulk")
        await slow.subscribe(2, "bulk")
        pub = await Browser.open(g.ws_url("a"))
        wait_interest(o, "bulk")
        got = await paced(pub, fast, n, lambda i: wire.publish(i + 1, "bulk", numbered(i, size)))
        assert got == list(range(n))  # the slow one did not hold it back
        st = status(g, "b")
        assert st["slowest_lag_bytes"] > WINDOW_BYTES // 2
        received, gap = [], 0
        while len(received) + gap < n:
            op, d = await slow.next()
            if op is GatewayOp.NOTICE:
                assert d[1] is NoticeKind.GAP
                gap += d[2]
            else:
                received.append(int.from_bytes(d.payload[:4], "big"))
        assert 0 < gap < n and received == sorted(received)
        assert len(received) + gap == n
        for b in (fast, slow, pub):
            await b.close()
    run(go())
    assert status(g, "b")["counters"]["reliable_gap_messages"] > 0


def test_a_slow_browser_on_a_live_topic_loses_the_oldest_counted(net):
    o, g = net
    n, size = 200, 64 << 10  # 12.5 MiB, far past the live lag bound

    async def go():
        fast = await Browser.open(g.ws_url("b"))
        slow = await Browser.open(g.ws_url("b"))
        await fast.subscribe(1, "video", reliable=False)
        await slow.subscribe(2, "video", reliable=False)
        pub = await Browser.open(g.ws_url("b"))
        got = await paced(pub, fast, n, lambda i: wire.publish(0, "video", numbered(i, size), reliable=False))
        assert got == list(range(n))
        received, dropped = [], 0
        while True:
            try:
                op, d = await slow.next(timeout_s=1.0)
            except TimeoutError:
                break
            if op is GatewayOp.NOTICE:
                assert d[1] is NoticeKind.LIVE_DROPPED
                dropped += d[2]
            else:
                received.append(int.from_bytes(d.payload[:4], "big"))
        assert received == sorted(received) and received[-1] == n - 1  # the newest always arrives
        assert dropped > 0 and len(received) + dropped == n
        # what reached the slow browser after its socket filled is bounded by the lag, not the topic
        assert len(received) * size < n * size - LIVE_LAG_BYTES
        for b in (fast, slow, pub):
            await b.close()
    run(go())
    assert status(g, "b")["counters"]["live_dropped"] > 0


def test_history_of_a_topic_the_relays_keep_none_of_is_a_notice_not_a_failure(net):
    _, g = net

    async def go():
        b = await Browser.open(g.ws_url("a"))
        await b.send(wire.subscribe(3, "hist", history=100))
        assert await b.next() == (GatewayOp.SUBSCRIBED, 3)
        op, (sub_id, kind, _, text) = await b.next()
        assert (op, sub_id, kind) == (GatewayOp.NOTICE, 3, NoticeKind.HISTORY_UNAVAILABLE)
        assert "keeps no history of topic 'hist'" in text and "--history" in text
        await b.close()
    run(go())


def test_history_leaves_out_a_file_whose_first_fragments_are_older_than_the_kept_past():
    file = envelope.fragments(b"s" * 8, 1, bytes(3 * envelope.FRAGMENT_BYTES), sent_ms=1.0, dc="a", meta="{}")
    text = envelope.fragments(b"s" * 8, 2, b"hi", sent_ms=2.0, dc="a", meta="{}")
    past = [Message("t", d, i, 1, True) for i, d in enumerate(file[1:] + text + [b"not an envelope"])]
    assert [m.data for m in whole_messages(past)] == [*text, b"not an envelope"]
    whole = [Message("t", d, i, 1, True) for i, d in enumerate(file)]
    assert whole_messages(whole) == whole


def test_history_comes_first_then_the_live_messages(net):
    o, g = net

    async def go():
        reader = await Browser.open(g.ws_url("b"))  # relay b delivers the topic: it keeps it
        await reader.subscribe(1, "kept.room")
        pub = await Browser.open(g.ws_url("a"))
        wait_interest(o, "kept.room")
        for i in range(3):
            await pub.send(wire.publish(10 + i, "kept.room", f"m{i}".encode()))
            assert await pub.next() == (GatewayOp.ACK, 10 + i)
        assert [(await reader.next())[1].payload for _ in range(3)] == [b"m0", b"m1", b"m2"]
        late = await Browser.open(g.ws_url("b"))
        await late.send(wire.subscribe(5, "kept.room", history=10))
        await pub.send(wire.publish(0, "kept.room", b"live"))  # races the history request
        assert await late.next() == (GatewayOp.SUBSCRIBED, 5)
        got = [(await late.next())[1] for _ in range(4)]
        past = [bool(d.flags & MessageFlag.HISTORY) for d in got]
        assert [d.payload for d in got] == [b"m0", b"m1", b"m2", b"live"]
        assert past[:3] == [True] * 3  # the past first, whatever the live message raced
        if past[3]:  # it reached the relay's record first: its live copy follows (stemflow.js
            op, d = await late.next()  # drops such a copy by message id)
            assert (d.payload, d.flags & MessageFlag.HISTORY) == (b"live", 0)
        for b in (reader, pub, late):
            await b.close()
    run(go())


def test_a_gateway_that_loses_its_relay_closes_its_browsers_and_exits(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    try:
        g = Gateways(o, ["a"])
        try:
            async def go():
                b = await Browser.open(g.ws_url("a"))
                o.kill("a")
                code, reason = await b.closed()
                assert code == CloseCode.INTERNAL_ERROR and "lost its relay" in reason
                await b.close()
            run(go())
            p = g.procs["a"]
            assert p.wait(10) == 1
        finally:
            g.close()
        err = (tmp_path / "gateway-a.log").read_text().strip().splitlines()
        assert err[-1].startswith("stemflow gateway: lost relay")
    finally:
        o.close()


def test_cli_reports_an_unreachable_relay_in_one_line():
    p = subprocess.run([sys.executable, "-m", "stemflow.cli", "gateway", "--relay", "127.0.0.1:1",
                        "--listen", "127.0.0.1:0"], cwd=ROOT, capture_output=True, timeout=30)
    assert p.returncode == 1
    assert p.stderr.decode().strip().startswith("stemflow gateway: cannot reach relay 127.0.0.1:1")
    assert len(p.stderr.decode().strip().splitlines()) == 1


def test_the_gateway_serves_the_app_and_the_library(net):
    _, g = net
    with urllib.request.urlopen(g.url["a"] + "/chat", timeout=5) as r:
        assert r.url.endswith("/chat/") and b"Stemflow Chat" in r.read()
    with urllib.request.urlopen(g.url["a"] + "/stemflow.js", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert b"export async function connect" in r.read()
    with urllib.request.urlopen(g.url["a"] + "/gateways.json", timeout=5) as r:
        assert json.load(r)["gateways"][0] == g.ws_url("a")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(g.url["a"] + "/chat/../../pyproject.toml", timeout=5)
