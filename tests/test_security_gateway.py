"""The web gateway checks browsers' tokens: a browser without one is turned away at HELLO with
the reason; a topic outside its token is refused with the reason while its socket stays open."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stemflow.gateway import wire
from stemflow.gateway.relaylink import RelayLink
from stemflow.gateway.server import Gateway, make_app
from stemflow.gateway.wire import CloseCode, GatewayOp, NoticeKind
from stemflow.relay.server import Relay
from stemflow.security.permissions import Authenticator
from stemflow.security.tokens import issue_token

pytestmark = pytest.mark.timeout(30)
KEY = Ed25519PrivateKey.generate()


async def _gateway() -> tuple[Relay, RelayLink, web.AppRunner, str, Gateway]:
    relay = Relay("a", "127.0.0.1:0", "127.0.0.1:9")
    link = await RelayLink.open(await relay.start())
    gw = Gateway(link, None, [], Authenticator(KEY.public_key()))
    runner = web.AppRunner(make_app(gw), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return relay, link, runner, f"ws://{host}:{port}/ws", gw


async def _next(ws: aiohttp.ClientWebSocketResponse):
    msg = await ws.receive(5)
    if msg.type is not aiohttp.WSMsgType.BINARY:
        return msg.type, (ws.close_code, msg.extra)
    return wire.decode_gateway(msg.data)


def test_a_browser_without_a_token_is_turned_away_with_the_reason() -> None:
    async def run() -> None:
        relay, link, runner, url, gw = await _gateway()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url)
                await ws.send_bytes(wire.hello())
                typ, (code, reason) = await _next(ws)
                assert code == CloseCode.POLICY_VIOLATION and "authentication required" in reason
                ws = await http.ws_connect(url)
                expired = issue_token(KEY, "b", (">",), (">",), 60, time.time() - 3600)
                await ws.send_bytes(wire.hello({"token": expired}))
                typ, (code, reason) = await _next(ws)
                assert "expired" in reason
            assert gw.counters["refused_token"] == 2
        finally:
            await runner.cleanup()
            await link.close()
            await relay.stop()

    asyncio.run(run())


def test_topics_outside_a_browsers_token_are_refused_and_its_socket_stays_open() -> None:
    async def run() -> None:
        relay, link, runner, url, gw = await _gateway()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url)
                token = issue_token(KEY, "alice", ("chat.*",), ("chat.*",), 60, time.time())
                await ws.send_bytes(wire.hello({"token": token}))
                assert (await _next(ws))[0] is GatewayOp.WELCOME
                await ws.send_bytes(wire.subscribe(1, "news"))
                op, (sub_id, kind, _, text) = await _next(ws)
                assert (op, sub_id, kind) == (GatewayOp.NOTICE, 1, NoticeKind.GAP)
                assert "permission denied: subscribe to 'news'" in text
                await ws.send_bytes(wire.publish(7, "news.eu", b"x"))
                assert await _next(ws) == (GatewayOp.ERROR, (7, "permission denied: publish to "
                                                             "'news.eu' (token allows: chat.*)"))
                await ws.send_bytes(wire.subscribe(2, "chat.room"))
                assert await _next(ws) == (GatewayOp.SUBSCRIBED, 2)
                await ws.send_bytes(wire.publish(0, "chat.room", b"hi"))  # no controller: no ACK
                op, m = await _next(ws)
                assert op is GatewayOp.MESSAGE and m.payload == b"hi"
            assert (gw.counters["denied_subscribe"], gw.counters["denied_publish"]) == (1, 1)
        finally:
            await runner.cleanup()
            await link.close()
            await relay.stop()

    asyncio.run(run())
