"""The gateway's /files routes: large messages by HTTP POST and GET (docs/gateway.md, "Files").

A request acts as the browser session whose key it carries (given in WELCOME), so it has that
session's token grant: a POST is checked like a PUBLISH, a GET needs an open subscription of the
session on the message's topic. The body of a POST is cut into envelope fragments as it arrives
and published reliably through the relay link, under the session's in-flight bound; the answer
comes when the ingress relay accepted every fragment. A GET streams the fragments' bodies in
order as this gateway receives them. Errors are one line of text with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from stemflow.client import ClientError
from stemflow.gateway import files, wire
from stemflow.gateway.envelope import FRAGMENT_BYTES
from stemflow.security.permissions import Refused

if TYPE_CHECKING:
    from stemflow.gateway.server import BrowserSession, Gateway

CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600"}
"""Pages may be served by another gateway than the one they use; requests carry the session
key, not cookies, so any origin may ask."""
NO_SESSION = "unknown session key: open a WebSocket and use its WELCOME's key"
STALL_S = 30.0
"""A GET waits this long for a fragment that has not come before giving up on the message."""


def _fail(status: int, counter: str, gw: Gateway, reason: str) -> web.Response:
    gw.counters[counter] += 1
    return web.Response(status=status, text=reason, headers=CORS)


def _session(gw: Gateway, request: web.Request) -> BrowserSession | None:
    return gw.by_key.get(request.query.get("key", ""))


def routes(gw: Gateway) -> list[web.RouteDef]:
    async def preflight(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers=CORS)

    async def upload(request: web.Request) -> web.StreamResponse:
        s = _session(gw, request)
        if s is None:
            return _fail(403, "files_refused", gw, NO_SESSION)
        try:
            u = files.Upload.parse(dict(request.query))
        except files.BadUpload as e:
            return _fail(400, "files_refused", gw, f"bad upload: {e}")
        if s.grant is not None:
            try:
                gw.auth.check_publish(s.grant, u.topic)  # type: ignore[union-attr]
            except Refused as e:
                return _fail(403, e.counter, gw, str(e))
        total = request.content_length
        if total is None:
            return _fail(411, "files_refused", gw, "an upload needs a Content-Length")
        if total > files.MAX_FILE_BYTES:
            return _fail(413, "files_refused", gw, f"upload of {total} bytes exceeds the gateway's "
                                                   f"limit of {files.MAX_FILE_BYTES} bytes")
        count = max(1, -(-total // FRAGMENT_BYTES))
        pending: list[asyncio.Task[None]] = []
        try:
            for i in range(count):
                body = await request.content.readexactly(min(FRAGMENT_BYTES, total - i * FRAGMENT_BYTES))
                data = files.fragment(u, gw.link.dc, i, count, total, body)
                await s.reserve(len(data))
                ack = u.first_ack + i if u.first_ack else 0
                pending.append(asyncio.create_task(_publish(s, u, data, ack)))
                await asyncio.sleep(0)  # let it take its sequence number before the next one
            await asyncio.gather(*pending)
        except asyncio.IncompleteReadError:
            return _fail(400, "files_refused", gw, f"upload ended before its {total} bytes")
        except (ClientError, ValueError) as e:
            return _fail(502, "publish_errors", gw, f"publish to {u.topic}: {e}")
        finally:
            for t in pending:
                if not t.done():
                    t.cancel()
        gw.counters["files_uploaded"] += 1
        gw.counters["published"] += count
        return web.json_response({"id": f"{u.sender.hex()}:{u.number}", "fragments": count,
                                  "bytes": total}, headers=CORS)

    async def download(request: web.Request) -> web.StreamResponse:
        s = _session(gw, request)
        if s is None:
            return _fail(403, "files_refused", gw, NO_SESSION)
        mid = request.match_info["message_id"]
        held = gw.files.get(mid)
        if held is None:
            return _fail(404, "files_missing", gw,
                         f"this gateway holds no message {mid} (kept {files.KEEP_S:.0f} s)")
        if not s.reads(held.topic):
            return _fail(403, "files_refused", gw, f"not subscribed to {held.topic} on this gateway")
        resp = web.StreamResponse(headers={**CORS, "Content-Type": "application/octet-stream",
                                           "Cache-Control": "no-store"})
        resp.content_length = held.total
        await resp.prepare(request)
        for i in range(held.count):
            while i not in held.parts:
                changed = held.changed
                try:
                    await asyncio.wait_for(changed.wait(), STALL_S)
                except TimeoutError:
                    return _abort(gw, request, resp)
                if gw.files.get(mid) is not held:
                    return _abort(gw, request, resp)
            await resp.write(held.parts[i])
        await resp.write_eof()
        gw.counters["files_downloaded"] += 1
        return resp

    return [web.options("/files", preflight), web.options("/files/{message_id}", preflight),
            web.post("/files", upload), web.get("/files/{message_id}", download)]


def _abort(gw: Gateway, request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Cut a download short: the page's fetch fails, and it may GET again after a resume."""
    gw.counters["files_stalled"] += 1
    if request.transport is not None:
        request.transport.abort()
    return resp


async def _publish(s: BrowserSession, u: files.Upload, data: bytes, ack: int) -> None:
    """One fragment; ACK `ack` on the session's WebSocket when the relay accepted it (the
    page's progress bar follows those, as for fragments it publishes itself)."""
    try:
        await s.gw.link.publish(u.topic, data, reliable=True, delay_sensitive=u.delay_sensitive)
        if ack:
            await s._send(wire.ack(ack))
    finally:
        s.release(len(data))

