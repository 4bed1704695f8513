"""The messaging app in real browsers: headless Chromium (Debian's `chromium`) driven by Playwright,
on gateways in front of two relay processes. Screenshots of the chat go to docs/screenshots/ when
STEMFLOW_UPDATE_SCREENSHOTS=1 is set (see SCREENSHOTS).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json as json_
import os
import threading
import time
import zlib

import aiohttp
import pytest
from browsers import NEEDS_CHROMIUM, SCREENSHOTS, WAIT_MS, Browsers
from gatewaynet import Gateways
from relaynet import Overlay

from stemflow.gateway import envelope, wire

pytestmark = [pytest.mark.timeout(120), NEEDS_CHROMIUM]

HISTORY_RULE = ">=1000/86400"
"""Every topic's last 1000 messages, a day at most: the chat asks for the last 100."""


def png(width: int, height: int, seed: int) -> bytes:
    """A noisy RGB PNG (barely compressible, so a few MB), made here rather than shipped."""
    rows = bytearray()
    noise = hashlib.shake_256(f"image {seed}".encode()).digest(width * height * 3)
    for y in range(height):
        rows.append(0)
        line = bytearray(noise[y * width * 3:(y + 1) * width * 3])
        for x in range(0, width * 3, 3):  # a gradient under the noise, so the picture shows something
            line[x] = (line[x] // 4 + x * 191 // (width * 3)) & 0xFF
            line[x + 2] = (line[x + 2] // 4 + y * 191 // height) & 0xFF
        rows += line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows), 1)) \
        + chunk(b"IEND", b"")


@pytest.fixture
def net(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop", relay_args=("--history", HISTORY_RULE))
    g = b = None
    try:
        g = Gateways(o, ["a", "b"])
        b = Browsers()
        yield o, g, b
    finally:
        if b is not None:
            b.close()
        if g is not None:
            g.close()
        o.close()


def chat_url(g: Gateways, serving: str, name: str, room: str, gateways: list[str]) -> str:
    urls = ",".join(g.ws_url(d) for d in gateways)
    return f"{g.url[serving]}/chat/?name={name}&room={room}&gateways={urls}"


def send_text(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def texts(page) -> list[str]:
    return page.evaluate("window.chat.log.filter(m => m.kind === 'text').map(m => m.text)")


def wait_texts(page, want: list[str], timeout_ms: int = WAIT_MS) -> None:
    page.wait_for_function("want => want.every(t => window.chat.log.some(m => m.text === t))", arg=want,
                           timeout=timeout_ms)


def wait_both_subscribed(o: Overlay, topic: str) -> None:
    o.wait_status(lambda s: all(any(i["topic"] == topic and i["subscribers"] >= 1
                                    for i in s["reports"].get(dc, {}).get("interest", [])) for dc in "ab"))


def test_two_browsers_on_two_relays_chat_and_send_an_image(net):
    o, g, browsers = net
    alice = browsers.open(chat_url(g, "a", "Alice", "general", ["a"]))
    bob = browsers.open(chat_url(g, "b", "Bob", "general", ["b"]))
    assert alice.evaluate("window.chat.conn.dc") == "a" and bob.evaluate("window.chat.conn.dc") == "b"
    wait_both_subscribed(o, "chat/general")

    send_text(alice, "Hi Bob, this crossed from datacenter a to b")
    wait_texts(bob, ["Hi Bob, this crossed from datacenter a to b"])
    send_text(bob, "Hello Alice! Back the other way.")
    wait_texts(alice, ["Hello Alice! Back the other way."])
    got = bob.evaluate("window.chat.log.find(m => m.name === 'Alice')")
    assert got["dc"] == "a" and 0 < got["latencyMs"] < 5000
    # the sender's datacenter and the measured latency are on the page, not only in the state
    row = bob.locator(".msg", has_text="crossed from datacenter a")
    assert row.locator(".dc").inner_text() == "a"
    assert "delivered in" in row.locator(".latency").inner_text()

    image = png(1400, 900, seed=1)
    assert 3 << 20 < len(image) < 10 << 20
    alice.set_input_files("#file-input", files=[{"name": "overlay.png", "mimeType": "image/png",
                                                 "buffer": image}])
    bob.wait_for_function("window.chat.log.some(m => m.filename === 'overlay.png')", timeout=WAIT_MS)
    digest = bob.evaluate("""async () => {
        const m = window.chat.log.find(m => m.filename === 'overlay.png');
        const buf = await (await fetch(m.url)).arrayBuffer();
        const h = await crypto.subtle.digest('SHA-256', buf);
        return Array.from(new Uint8Array(h), b => b.toString(16).padStart(2, '0')).join('');
    }""")
    assert digest == hashlib.sha256(image).hexdigest()
    send_text(bob, "Got the picture, it arrived intact.")
    wait_texts(alice, ["Got the picture, it arrived intact."])
    bob.wait_for_function("document.querySelector('img.msg-image')?.complete", timeout=WAIT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=str(SCREENSHOTS / "chat-two-datacenters.png"))


def test_a_large_file_shows_progress_on_both_ends(net):
    o, g, browsers = net
    alice = browsers.open(chat_url(g, "a", "Alice", "files", ["a"]))
    bob = browsers.open(chat_url(g, "b", "Bob", "files", ["b"]))
    wait_both_subscribed(o, "chat/files")
    send_text(alice, "Sending the 10 MB trace now")
    wait_texts(bob, ["Sending the 10 MB trace now"])
    trace = os.urandom(10 * 1000 * 1000)
    # progress values as the pages show them, recorded as they change
    for page, sel in ((alice, "uploading"), (bob, "receiving")):
        page.evaluate("""sel => { window.seen = new Set(); new MutationObserver(() => {
            for (const n of document.querySelectorAll('.msg-meta.pending'))
                if (n.textContent.startsWith(sel)) window.seen.add(n.textContent); })
            .observe(document.body, {subtree: true, childList: true, characterData: true}); }""", sel)
    alice.set_input_files("#file-input", files=[{"name": "trace.bin", "mimeType": "application/octet-stream",
                                                 "buffer": trace}])
    bob.wait_for_function("window.chat.log.some(m => m.filename === 'trace.bin')", timeout=WAIT_MS)
    assert bob.evaluate("window.chat.log.find(m => m.filename === 'trace.bin').size") == len(trace)
    # the sender's bar follows the relay's acknowledgements, which may come after Bob has it all
    alice.wait_for_function("![...document.querySelectorAll('.msg-meta.pending')]"
                            ".some(n => n.textContent.startsWith('uploading'))", timeout=WAIT_MS)
    for page in (alice, bob):
        shown = page.evaluate("[...window.seen]")
        partial = [s for s in shown if not s.endswith(" 100%") and not s.endswith(" 0%")]
        assert len(partial) >= 3, shown  # the bar moved through intermediate values
    assert bob.locator(".file-card .file-name", has_text="trace.bin").count() == 1
    send_text(bob, "Thanks, all 10 MB here.")
    wait_texts(alice, ["Thanks, all 10 MB here."])
    bob.screenshot(path=str(SCREENSHOTS / "chat-file.png"))


def test_a_browser_joining_later_sees_the_history(net):
    o, g, browsers = net
    alice = browsers.open(chat_url(g, "a", "Alice", "history", ["a"]))
    bob = browsers.open(chat_url(g, "b", "Bob", "history", ["b"]))
    wait_both_subscribed(o, "chat/history")
    earlier = [f"earlier message {i}" for i in range(5)]
    for t in earlier:
        send_text(alice, t)
    wait_texts(bob, earlier)
    carol = browsers.open(chat_url(g, "b", "Carol", "history", ["b"]))
    wait_texts(carol, earlier, timeout_ms=5000)  # a loopback history request takes milliseconds
    assert carol.evaluate("window.chat.log.every(m => m.history)")
    send_text(alice, "welcome, Carol")
    wait_texts(carol, ["welcome, Carol"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    carol.screenshot(path=str(SCREENSHOTS / "chat-history.png"))


def test_a_killed_gateway_s_browser_moves_to_the_other_and_misses_nothing(net):
    o, g, browsers = net
    carol = browsers.open(chat_url(g, "a", "Carol", "ops", ["a", "b"]))
    first = carol.evaluate("window.chat.conn.dc")
    other = "b" if first == "a" else "a"
    dave = browsers.open(chat_url(g, other, "Dave", "ops", [other]))
    wait_both_subscribed(o, "chat/ops")
    send_text(dave, "warm-up")
    wait_texts(carol, ["warm-up"])

    # Dave keeps talking while Carol's gateway dies; Carol talks while she is reconnecting.
    dave.evaluate("""() => { window.n = 0; window.talk = setInterval(() => {
        if (window.n >= 60) return clearInterval(window.talk);
        const input = document.getElementById('message-input');
        input.value = `dave ${++window.n}`;
        document.getElementById('composer').requestSubmit(); }, 40); }""")
    carol.wait_for_function("window.chat.log.some(m => m.text === 'dave 10')", timeout=WAIT_MS)
    g.kill(first)
    send_text(carol, "carol while reconnecting")
    carol.wait_for_function(f"window.chat.conn.dc === '{other}'", timeout=WAIT_MS)
    want = [f"dave {i}" for i in range(1, 61)]
    wait_texts(carol, want)
    wait_texts(dave, ["carol while reconnecting"])
    got = texts(carol)
    assert [t for t in got if t.startswith("dave ")] == want  # each once, in Dave's order
    assert carol.evaluate("window.chat.conn.counters.reconnects") == 1
    assert texts(dave).count("carol while reconnecting") == 1
    assert carol.locator(".system", has_text=f"Reconnected through datacenter {other}").count() == 1

    g.start(first)  # back on its port: a browser can join through it again
    erin = browsers.open(chat_url(g, first, "Erin", "ops", [first]))
    assert erin.evaluate("window.chat.conn.dc") == first
    time.sleep(0.5)
    send_text(erin, "joined through the restarted gateway")
    wait_texts(carol, ["joined through the restarted gateway"])
    carol.screenshot(path=str(SCREENSHOTS / "chat-after-reconnect.png"))


class SlowGateway:
    """A WebSocket server that answers HELLO and PING like a gateway, each PONG `delay_s` late:
    a far-away datacenter, for the RTT choice."""

    def __init__(self, delay_s: float):
        from aiohttp import web

        async def ws(request):
            sock = web.WebSocketResponse()
            await sock.prepare(request)
            async for msg in sock:
                op = wire.decode(msg.data)
                if isinstance(op, wire.Hello):
                    await sock.send_bytes(wire.welcome({"dc": "far", "gateway_ms": time.time() * 1000}))
                elif isinstance(op, wire.Ping):
                    await asyncio.sleep(delay_s)
                    await sock.send_bytes(wire.pong(op.ping_id, time.time() * 1000))
            return sock

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = self.loop.create_future()
            app = web.Application()
            app.router.add_get("/ws", ws)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
            ready.set()
            await self.stop
            await runner.cleanup()

        ready = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(1)  # Playwright holds this thread's loop
        self.done = self.pool.submit(asyncio.run, serve())
        if not ready.wait(10):
            raise RuntimeError(f"the slow gateway did not start: {self.done.exception()}")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set_result, None)
        self.done.result(10)
        self.pool.shutdown()


def test_connect_keeps_the_lowest_rtt_and_a_live_stream_flows(net):
    o, g, browsers = net
    dead, far = "ws://127.0.0.1:1/ws", SlowGateway(delay_s=0.03)
    try:
        urls = f"{dead},{far.url},{g.ws_url('a')}"
        page = browsers.open(f"{g.url['a']}/chat/?name=Sam&room=live&gateways={urls}")
        conn = page.evaluate("({dc: window.chat.conn.dc, ranking: window.chat.conn.ranking})")
    finally:
        far.close()
    assert conn == {"dc": "a", "ranking": [g.ws_url("a"), far.url, dead]}  # by RTT; unreachable last
    viewer = browsers.open(chat_url(g, "b", "Vic", "live", ["b"]))
    viewer.evaluate("""async () => { window.frames_ = [];
        await window.chat.conn.subscribe('video/cam', (m) => window.frames_.push(m.data[0]),
                                         { reliable: false }); }""")
    o.wait_status(lambda s: any(i["topic"] == "video/cam"
                                for i in s["reports"].get("b", {}).get("interest", [])))
    page.evaluate("""async () => { const s = window.chat.conn.openStream('video/cam');
        for (let i = 0; i < 20; i++) {
            await s.send(new Uint8Array([i, 1, 2, 3]));
            await new Promise(r => setTimeout(r, 20));
        } }""")
    viewer.wait_for_function("window.frames_.length === 20", timeout=WAIT_MS)
    assert viewer.evaluate("window.frames_") == list(range(20))


def test_a_pattern_subscription_gives_each_message_its_topic(net):
    o, g, browsers = net
    viewer = browsers.open(chat_url(g, "b", "Pat", "patterns", ["b"]))
    viewer.evaluate("""async () => { window.got = [];
        await window.chat.conn.subscribe('cams.*', (m) => window.got.push([m.topic, m.data[0]])); }""")
    o.wait_status(lambda s: any(i["topic"] == "cams.*"
                                for i in s["reports"].get("b", {}).get("interest", [])))
    page = browsers.open(chat_url(g, "a", "Cam", "patterns", ["a"]))
    page.evaluate("""async () => { for (const [t, i] of [['cams.one', 1], ['cams.two', 2], ['other', 3]])
        await window.chat.conn.publish(t, new Uint8Array([i])); }""")
    viewer.wait_for_function("window.got.length === 2", timeout=WAIT_MS)
    assert sorted(viewer.evaluate("window.got")) == [["cams.one", 1], ["cams.two", 2]]


def test_a_scripted_member_and_a_browser_understand_each_other(net):
    """stemflow.gateway.envelope (Python) and stemflow.js speak the same envelope."""
    o, g, browsers = net
    ann = browsers.open(chat_url(g, "a", "Ann", "mixed", ["a"]))

    async def member() -> dict:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(g.ws_url("b"), max_msg_size=0)
            await ws.send_bytes(wire.hello())
            await ws.receive()
            await ws.send_bytes(wire.subscribe(1, "chat/mixed"))
            await ws.receive()
            wait_both_subscribed(o, "chat/mixed")  # blocks this member's own loop only
            meta = json_.dumps({"name": "Bot", "kind": "text"})
            for frag in envelope.fragments(b"scripted", 1, b"hello from Python", sent_ms=time.time() * 1000,
                                           dc="b", meta=meta):
                await ws.send_bytes(wire.publish(1, "chat/mixed", frag, delay_sensitive=True))
            assembler = envelope.Assembler()
            while True:
                op, d = wire.decode_gateway((await ws.receive(20)).data)
                if op is wire.GatewayOp.MESSAGE:
                    f = envelope.decode(d.payload)
                    body = assembler.add(f)
                    if body is not None and json_.loads(f.meta)["name"] == "Ann":
                        return {"text": body.decode(), "dc": f.dc}

    # Playwright's sync API owns this thread: the member runs on its own loop in another thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        member_done = pool.submit(asyncio.run, member())
        wait_texts(ann, ["hello from Python"])
        send_text(ann, "hello back from the browser")
        got = member_done.result(60)
    assert got == {"text": "hello back from the browser", "dc": "a"}
    shown = ann.evaluate("window.chat.log.find(m => m.name === 'Bot')")
    assert shown["dc"] == "b" and shown["latencyMs"] is not None
