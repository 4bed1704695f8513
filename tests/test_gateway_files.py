"""Large messages over HTTP (docs/gateway.md, "Files"): a body POSTed to one gateway arrives
intact, through the relays, at a browser of another gateway that GETs it after the FILE notice
on its WebSocket; and the gateway refuses what it should, each with a status and one line."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gatewaynet import overlay_with_gateways

from stemflow.gateway import envelope, files, wire
from stemflow.gateway.relaylink import RelayLink
from stemflow.gateway.server import Gateway, make_app
from stemflow.gateway.wire import GatewayOp, MessageFlag
from stemflow.relay.server import Relay
from stemflow.security.permissions import Authenticator
from stemflow.security.tokens import issue_token

pytestmark = pytest.mark.timeout(90)
SENDER = "00112233445566ff"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with overlay_with_gateways(tmp_path_factory.mktemp("files")) as both:
        yield both


async def _open(http: aiohttp.ClientSession, url: str, info: dict | None = None):
    ws = await http.ws_connect(url, max_msg_size=0)
    await ws.send_bytes(wire.hello(info or {}))
    msg = await ws.receive(5)
    assert msg.data[0] == GatewayOp.WELCOME, msg
    return ws, json.loads(msg.data[1:])


async def _until(ws, op: GatewayOp):
    while True:
        msg = await ws.receive(10)
        assert msg.type is aiohttp.WSMsgType.BINARY, (msg, ws.close_code)
        got, value = wire.decode_gateway(msg.data)
        if got is op:
            return value


def _params(key: str, topic: str, number: int, **more: str) -> dict[str, str]:
    return {"key": key, "topic": topic, "sender": SENDER, "number": str(number),
            "sent_ms": str(time.time() * 1000), **more}


async def _raw_post(http_url: str, query: str, headers: str) -> tuple[int, str]:
    """A POST whose Content-Length says more than is sent: the answer must not wait for it."""
    u = urlsplit(http_url)
    r, w = await asyncio.open_connection(u.hostname, u.port)
    w.write(f"POST /files?{query} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    await w.drain()
    head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).decode()
    length = int(next(h.split(":")[1] for h in head.split("\r\n") if h.lower().startswith("content-length")))
    body = (await r.readexactly(length)).decode()
    w.close()
    return int(head.split()[1]), body


def test_a_posted_file_arrives_intact_at_another_gateways_browser(net) -> None:
    o, g = net
    body = os.urandom(3 * envelope.FRAGMENT_BYTES + 12345)

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            a, wa = await _open(http, g.ws_url("a"))
            b, wb = await _open(http, g.ws_url("b"))
            assert wa["files"] == "/files" and wa["max_file_bytes"] == files.MAX_FILE_BYTES
            await b.send_bytes(wire.subscribe(1, "files/intact", files_by_http=True))
            await _until(b, GatewayOp.SUBSCRIBED)
            o.wait_status(lambda s: any(i["topic"] == "files/intact"
                                        for i in s["reports"].get("b", {}).get("interest", [])))
            meta = json.dumps({"name": "Ann", "kind": "file", "filename": "x.bin"})
            params = _params(wa["http_key"], "files/intact", 7, meta=meta, acks="100")
            async with http.post(g.url["a"] + "/files", data=body, params=params) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
            assert answer == {"id": f"{SENDER}:7", "fragments": 4, "bytes": len(body)}
            acks = {await _until(a, GatewayOp.ACK) for _ in range(4)}
            assert acks == {100, 101, 102, 103}  # one per fragment the relay accepted
            note = await _until(b, GatewayOp.MESSAGE)
            assert note.flags & MessageFlag.FILE
            head = envelope.decode(note.payload)  # the envelope, its body left out
            assert (head.message_id, head.count, head.total_bytes, head.meta, head.body) == \
                (f"{SENDER}:7", 4, len(body), meta, b"")
            assert head.dc == "a"
            async with http.get(f"{g.url['b']}/files/{head.message_id}", params={"key": wb["http_key"]}) as r:
                assert r.status == 200
                got = await r.read()
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
            # the same message sent again (a page whose gateway went before answering) is not
            # announced twice, and a subscriber without FILES_BY_HTTP gets the fragments themselves
            c, _ = await _open(http, g.ws_url("b"))
            await c.send_bytes(wire.subscribe(1, "files/intact"))
            await _until(c, GatewayOp.SUBSCRIBED)
            for number in (7, 8):  # 7 again, as a page sends it after a reconnection
                async with http.post(g.url["a"] + "/files", data=body,
                                     params=_params(wa["http_key"], "files/intact", number)) as r:
                    assert r.status == 200
            assembler = envelope.Assembler()
            whole = None
            while whole is None:
                m = await _until(c, GatewayOp.MESSAGE)
                assert not m.flags & MessageFlag.FILE
                whole = assembler.add(envelope.decode(m.payload))
            assert whole == body
            note = await _until(b, GatewayOp.MESSAGE)
            assert envelope.decode(note.payload).message_id == f"{SENDER}:8"

    asyncio.run(run())


def test_the_file_routes_refuse_what_they_should_with_one_line(net) -> None:
    o, g = net

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            a, wa = await _open(http, g.ws_url("a"))
            key = wa["http_key"]
            url = g.url["a"] + "/files"

            async def post(params: dict[str, str], data: bytes = b"x" * 10) -> tuple[int, str]:
                async with http.post(url, params=params, data=data) as r:
                    return r.status, await r.text()

            assert await post(_params("nope", "t", 1)) == (
                403, "unknown session key: open a WebSocket and use its WELCOME's key")
            assert await post({**_params(key, "t", 1), "sender": "xyz"}) == (
                400, "bad upload: sender must be 16 lowercase hex digits")
            assert await post({k: v for k, v in _params(key, "t", 1).items() if k != "topic"}) == (
                400, "bad upload: missing parameter topic")
            assert (await post(_params(key, "t", 0)))[0] == 400
            query = "&".join(f"{k}={v}" for k, v in _params(key, "t", 1).items())
            status, text = await _raw_post(url, query, f"Content-Length: {files.MAX_FILE_BYTES + 1}\r\n")
            assert (status, text) == (413, f"upload of {files.MAX_FILE_BYTES + 1} bytes exceeds the "
                                      f"gateway's limit of {files.MAX_FILE_BYTES} bytes")
            async with http.get(f"{url}/{SENDER}:99", params={"key": key}) as r:
                assert r.status == 404 and "holds no message" in await r.text()
            async with http.get(f"{url}/{SENDER}:99", params={"key": "nope"}) as r:
                assert r.status == 403
            # a message this gateway holds, asked for by a browser not subscribed to its topic
            b, wb = await _open(http, g.ws_url("b"))
            await b.send_bytes(wire.subscribe(1, "files/private", files_by_http=True))
            await _until(b, GatewayOp.SUBSCRIBED)
            o.wait_status(lambda s: any(i["topic"] == "files/private"
                                        for i in s["reports"].get("b", {}).get("interest", [])))
            body = os.urandom(2 * envelope.FRAGMENT_BYTES)
            async with http.post(url, data=body, params=_params(key, "files/private", 5)) as r:
                assert r.status == 200
            mid = envelope.decode((await _until(b, GatewayOp.MESSAGE)).payload).message_id
            other, wo = await _open(http, g.ws_url("b"))
            async with http.get(f"{g.url['b']}/files/{mid}", params={"key": wo["http_key"]}) as r:
                assert (r.status, await r.text()) == (403, "not subscribed to files/private on this gateway")
            await other.close()
            # the key dies with its WebSocket
            await a.close()
            await asyncio.sleep(0.2)
            assert (await post(_params(key, "t", 1)))[0] == 403

    asyncio.run(run())


def test_a_post_outside_the_browsers_token_is_refused() -> None:
    key = Ed25519PrivateKey.generate()

    async def run() -> None:
        relay = Relay("a", "127.0.0.1:0", "127.0.0.1:9")
        link = await RelayLink.open(await relay.start())
        gw = Gateway(link, None, [], Authenticator(key.public_key()))
        runner = web.AppRunner(make_app(gw), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as http:
                token = issue_token(key, "alice", ("chat.*",), ("chat.*",), 60, time.time())
                _, w = await _open(http, f"ws://{host}:{port}/ws", {"token": token})
                async with http.post(f"http://{host}:{port}/files", data=b"x" * 1000,
                                     params=_params(w["http_key"], "news.eu", 1)) as r:
                    assert (r.status, await r.text()) == (
                        403, "permission denied: publish to 'news.eu' (token allows: chat.*)")
            assert gw.counters["denied_publish"] == 1
        finally:
            await runner.cleanup()
            await link.close()
            await relay.stop()

    asyncio.run(run())


def test_the_store_keeps_what_its_bounds_allow() -> None:
    def frag(number: int, index: int, count: int = 2) -> tuple[files.Head, bytes]:
        data = envelope.encode_fragment(bytes.fromhex(SENDER), number, index, count, 2000,
                                        sent_ms=1.0, dc="a", meta="", body=b"x" * 1000)
        h = files.head(data)
        assert h is not None and (h.index, h.count) == (index, count)
        return h, data

    store = files.Store(limit_bytes=4000, keep_s=30.0)
    for number in (1, 2):
        for index in (0, 1, 1):  # the second copy of fragment 1 changes nothing
            store.add("t", *frag(number, index), now_s=float(number))
    assert store.bytes == 4000 and store.get(f"{SENDER}:1").complete
    store.add("t", *frag(3, 0), now_s=3.0)  # over the limit: the oldest message goes
    assert store.get(f"{SENDER}:1") is None and store.bytes == 3000 and store.evicted == 1
    store.expire(32.5)  # message 2 was received at 2 s, message 3 at 3 s
    assert store.get(f"{SENDER}:2") is None and store.get(f"{SENDER}:3") is not None
    assert files.head(b"not an envelope") is None
