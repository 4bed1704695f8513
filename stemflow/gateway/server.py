"""The gateway process: an aiohttp server that ties browsers' WebSockets to the relay link.

Owns the browser sessions (the order operations may come in, what closes a socket, the bound on
what a browser may have in flight), the topic feeds (one relay subscription and one window per
topic some browser reads here, kept `WINDOW_S` after the last one leaves so a reconnection finds
it), the delivery loop of each browser, the counters, and the HTTP side: the web apps, the
browser library and a JSON status page. The format is `wire`'s, the windows' policies are
`window`'s, the relay connections `relaylink`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp import WSMsgType, web

from stemflow.client import ClientError, Subscription
from stemflow.gateway import files, httpfiles, wire
from stemflow.gateway.relaylink import RelayLink
from stemflow.gateway.window import WINDOW_S, Reader, Window
from stemflow.gateway.wire import CloseCode, MessageFlag, NoticeKind, SubscribeFlag
from stemflow.security.permissions import Authenticator, Grant, Refused
from stemflow.subjects import is_pattern

log = logging.getLogger("stemflow.gateway")

LIBRARY = Path(__file__).parent / "static" / "stemflow.js"
APP_ROUTES = {"chat": "messaging", "live": "broadcast"}
"""URL path of each web app -> its folder under the static directory (apps/)."""
MAX_INFLIGHT_BYTES = 4 << 20
"""Bytes of one browser's publishes the relay has not yet accepted; past this the gateway stops
reading that browser (TCP carries the pause back). Sixteen 256 KiB file fragments: enough to
keep a 100 ms path full at 300 Mbit/s."""
MAX_SUBSCRIPTIONS = 1024
"""Open subscriptions per browser: a chat client has one per room, a dashboard a few dozen. Each
new topic costs the gateway a relay subscription and a window, so one browser may not open
thousands."""
SWEEP_INTERVAL_S = 1.0
"""How often idle windows drop messages older than WINDOW_S."""
SEND_TIMEOUT_S = 10.0
"""A control message (ACK, PONG) that cannot be written for this long means a dead browser."""


def now_ms() -> float:
    """Gateway time: wall-clock milliseconds, so gateways with synchronized clocks agree."""
    return time.time() * 1000.0


class GatewaySocket(web.WebSocketResponse):
    """aiohttp's WebSocket, closing an oversized message's socket with a reason, not only 1009.

    Made with `compress=False`: browsers offer permessage-deflate, and deflating a file's
    already-compressed fragments in Python made a 10 MB image take 0.7 s instead of 0.1 s."""

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if code == CloseCode.MESSAGE_TOO_BIG and not message:
            message = f"message exceeds the gateway's limit of {wire.MAX_WS_MESSAGE_BYTES} bytes".encode()
        return await super().close(code=code, message=message, drain=drain)


@dataclass
class Feed:
    """One topic as this gateway receives it."""

    topic: str
    window: Window
    subscription: Subscription
    sessions: set[BrowserSession] = field(default_factory=set)
    pump: asyncio.Task[None] | None = None
    linger: asyncio.TimerHandle | None = None


class Gateway:
    def __init__(self, link: RelayLink, static_dir: Path | None, peers: list[str],
                 auth: Authenticator | None = None):
        self.link, self.static_dir, self.peers = link, static_dir, peers
        self.auth = auth
        """Browsers' tokens and topic permissions (`stemflow.security.permissions`); None: open."""
        self.feeds: dict[str, Feed] = {}
        self._feed_locks: dict[str, asyncio.Lock] = {}
        self.sessions: set[BrowserSession] = set()
        self.by_key: dict[str, BrowserSession] = {}
        """Sessions by the key their page gives with its HTTP requests (/files)."""
        self.files = files.Store()
        self.counters: Counter[str] = Counter()
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # -- topics ------------------------------------------------------------------------------------

    async def feed(self, topic: str, session: BrowserSession) -> Feed:
        """The topic's feed, subscribing at the relay first if nobody here reads it."""
        async with self._feed_locks.setdefault(topic, asyncio.Lock()):
            f = self.feeds.get(topic)
            if f is None:
                sub = await self.link.subscribe(topic)
                f = self.feeds[topic] = Feed(topic, Window(now_ms()), sub)
                f.pump = asyncio.create_task(self._pump(f))
            if f.linger is not None:
                f.linger.cancel()
                f.linger = None
            f.sessions.add(session)
            return f

    def leave(self, f: Feed, session: BrowserSession) -> None:
        f.sessions.discard(session)
        if not f.sessions and f.linger is None:
            f.linger = asyncio.get_running_loop().call_later(WINDOW_S, self._drop_feed, f)

    def _drop_feed(self, f: Feed) -> None:
        if f.sessions or self.feeds.get(f.topic) is not f:
            return
        del self.feeds[f.topic]
        lock = self._feed_locks.get(f.topic)
        if lock is not None and not lock.locked():
            del self._feed_locks[f.topic]
        if f.pump is not None:
            f.pump.cancel()
        f.subscription.unsubscribe()

    async def _pump(self, f: Feed) -> None:
        pattern = is_pattern(f.topic)
        async for msg in f.subscription:
            f.window.append(msg.data, now_ms(), msg.topic if pattern else None)
            h = files.head(msg.data)
            if h is not None and h.count > 1:
                self.files.add(f.topic, h, msg.data, time.monotonic())
            self.counters["relay_messages"] += 1
            for s in f.sessions:
                s.wake.set()

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            t = now_ms()
            for f in self.feeds.values():
                f.window.expire(t)
            self.files.expire(time.monotonic())
            if self.auth is not None:
                for s, reason, counter in self.auth.due(time.monotonic()):
                    self.counters[counter] += 1
                    await cast(BrowserSession, s).close(CloseCode.POLICY_VIOLATION, reason)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lags = [r.lag_bytes() for s in self.sessions for _, r in s.readers.values()]
        return {"dc": self.link.dc, "relay": self.link.address, "browsers": len(self.sessions),
                "topics": {t: {"readers": len(f.sessions), "window_messages": len(f.window.entries),
                               "window_bytes": f.window.bytes} for t, f in self.feeds.items()},
                "slowest_lag_bytes": max(lags, default=0), "rss_bytes": rss_bytes(),
                "files": {"messages": len(self.files.held), "bytes": self.files.bytes},
                "counters": dict(self.counters)}

    async def relay_lost(self, reason: str) -> None:
        log.error("%s", reason)
        for s in list(self.sessions):
            await s.close(CloseCode.INTERNAL_ERROR, "the gateway lost its relay; connect to another")
        if not self.lost.done():
            self.lost.set_result(reason)


class OutOfOrder(Exception):
    """A well-formed message the session's state does not allow (before HELLO, a reused id)."""


class TooMany(Exception):
    """A browser asked for more than a gateway gives one browser."""


class BrowserSession:
    """One browser's WebSocket: its subscriptions (positions in windows) and its publishes."""

    def __init__(self, gw: Gateway, ws: GatewaySocket):
        self.gw, self.ws = gw, ws
        self.readers: dict[int, tuple[Feed, Reader]] = {}
        self.held: set[int] = set()
        """Subscriptions whose history is being sent: their live messages wait in the window,
        so the browser gets the past first."""
        self.greeted = False
        self.inflight_bytes = 0
        self.room = asyncio.Event()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.grant: Grant | None = None
        self.key = secrets.token_urlsafe(18)
        """Given in WELCOME; the page's HTTP requests carry it, so they act as this session."""
        self.http_readers: set[int] = set()
        """Subscriptions whose multi-fragment messages the browser GETs (FILES_BY_HTTP)."""
        self.announced: dict[str, None] = {}
        """Recent message ids announced with the FILE flag (once per message, bounded)."""

    async def serve(self) -> None:
        deliver = asyncio.create_task(self._deliver())
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.BINARY:
                    await self._handle(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await self._reject("closed_malformed", CloseCode.UNSUPPORTED_DATA,
                                       "text message: the gateway speaks binary (docs/gateway.md)")
                elif msg.type is WSMsgType.ERROR:
                    code = getattr(msg.data, "code", None)
                    self.gw.counters["closed_oversized" if code == CloseCode.MESSAGE_TOO_BIG
                                     else "closed_ws_error"] += 1
        finally:
            self.gw.by_key.pop(self.key, None)
            if self.gw.auth is not None:
                self.gw.auth.forget(self)
            deliver.cancel()
            for t in self.tasks:
                t.cancel()
            for f, _ in self.readers.values():
                self.gw.leave(f, self)
            self.readers.clear()

    async def close(self, code: CloseCode, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def _reject(self, counter: str, code: CloseCode, reason: str) -> None:
        self.gw.counters[counter] += 1
        log.info("closing a browser socket: %s", reason)
        await self.close(code, reason)

    async def _send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            await asyncio.wait_for(self.ws.send_bytes(data), SEND_TIMEOUT_S)

    # -- operations --------------------------------------------------------------------------------

    async def _handle(self, data: bytes) -> None:
        try:
            op = wire.decode(data)
            await self._apply(op)
        except wire.MalformedMessage as e:
            await self._reject("closed_malformed", CloseCode.PROTOCOL_ERROR, f"malformed message: {e}")
        except OutOfOrder as e:
            await self._reject("closed_out_of_order", CloseCode.PROTOCOL_ERROR, f"out of order: {e}")
        except TooMany as e:
            await self._reject("closed_too_many", CloseCode.POLICY_VIOLATION, f"too many: {e}")
        except Refused as e:
            await self._reject(e.counter, CloseCode.POLICY_VIOLATION, str(e))

    async def _apply(self, op: wire.Operation) -> None:
        if isinstance(op, wire.Hello):
            if self.greeted:
                raise OutOfOrder("a second HELLO")
            if op.version != wire.VERSION:
                raise wire.MalformedMessage(f"version {op.version}; this gateway speaks {wire.VERSION}")
            if self.gw.auth is not None:
                self.grant = self.gw.auth.admit(self, op.info, time.monotonic())
            self.greeted = True
            self.gw.by_key[self.key] = self
            await self._send(wire.welcome({"dc": self.gw.link.dc, "version": wire.VERSION,
                                           "gateway_ms": now_ms(),
                                           "max_message_bytes": wire.MAX_WS_MESSAGE_BYTES,
                                           "files": "/files", "http_key": self.key,
                                           "max_file_bytes": files.MAX_FILE_BYTES}))
            return
        if not self.greeted:
            raise OutOfOrder(f"{type(op).__name__.upper()} before HELLO")
        if isinstance(op, wire.Ping):
            await self._send(wire.pong(op.ping_id, now_ms()))
        elif isinstance(op, wire.Publish):
            await self._publish(op)
        elif isinstance(op, wire.Subscribe):
            await self._subscribe(op)
        else:
            entry = self.readers.pop(op.sub_id, None)
            if entry is None:
                raise OutOfOrder(f"UNSUBSCRIBE of subscription {op.sub_id}, which is not open")
            self.http_readers.discard(op.sub_id)
            self.gw.leave(entry[0], self)

    async def _subscribe(self, op: wire.Subscribe) -> None:
        if op.sub_id in self.readers:
            raise OutOfOrder(f"SUBSCRIBE with subscription id {op.sub_id}, already open")
        if len(self.readers) >= MAX_SUBSCRIPTIONS:
            raise TooMany(f"more than {MAX_SUBSCRIPTIONS} open subscriptions")
        if self.grant is not None:
            try:
                self.gw.auth.check_subscribe(self.grant, op.topic)  # type: ignore[union-attr]
            except Refused as e:  # said to the browser; its socket stays open
                self.gw.counters[e.counter] += 1
                await self._send(wire.notice(op.sub_id, NoticeKind.GAP, 0, f"cannot subscribe: {e}"))
                return
        try:
            f = await self.gw.feed(op.topic, self)
        except ClientError as e:
            await self._send(wire.notice(op.sub_id, NoticeKind.GAP, 0, f"cannot subscribe: {e}"))
            return
        position = None
        if op.since_ms:
            if f.window.oldest_ms > op.since_ms:
                self.gw.counters["resume_gaps"] += 1
                await self._send(wire.notice(op.sub_id, NoticeKind.GAP, 0,
                                             "this gateway holds the topic only from "
                                             f"{f.window.oldest_ms:.0f} ms on"))
            position = f.window.index_since(op.since_ms)
            self.gw.counters["resumed"] += 1
        self.readers[op.sub_id] = (f, Reader(f.window, bool(op.flags & SubscribeFlag.RELIABLE), position))
        if op.flags & SubscribeFlag.FILES_BY_HTTP:
            self.http_readers.add(op.sub_id)
        await self._send(wire.subscribed(op.sub_id))
        if op.history:
            self.held.add(op.sub_id)
            self._spawn(self._history(op))
        self.wake.set()

    async def _history(self, op: wire.Subscribe) -> None:
        try:
            past = await self.gw.link.history(op.topic, op.history)
            for msg in past:
                await self._send(wire.message_header(op.sub_id, MessageFlag.HISTORY, 0.0) + msg.data)
        except (ClientError, TimeoutError) as e:
            self.gw.counters["history_unavailable"] += 1
            await self._send(wire.notice(op.sub_id, NoticeKind.HISTORY_UNAVAILABLE, 0, str(e)))
        finally:
            self.held.discard(op.sub_id)
            self.wake.set()

    async def _publish(self, op: wire.Publish) -> None:
        if self.grant is not None:
            try:
                self.gw.auth.check_publish(self.grant, op.topic)  # type: ignore[union-attr]
            except Refused as e:
                self.gw.counters[e.counter] += 1
                if op.request_id:
                    await self._send(wire.error(op.request_id, str(e)))
                return
        await self.reserve(len(op.payload))
        self._spawn(self._relay_publish(op))
        await asyncio.sleep(0)  # let it take its sequence number before the next publish

    async def reserve(self, n: int) -> None:
        """Wait until `n` more bytes of publishes fit in the browser's MAX_INFLIGHT_BYTES."""
        while self.inflight_bytes and self.inflight_bytes + n > MAX_INFLIGHT_BYTES:
            self.room.clear()
            await self.room.wait()
        self.inflight_bytes += n

    def release(self, n: int) -> None:
        self.inflight_bytes -= n
        self.room.set()

    def reads(self, topic: str) -> bool:
        """Whether this browser has a subscription open on `topic` here."""
        return any(f.topic == topic for f, _ in self.readers.values())

    async def _relay_publish(self, op: wire.Publish) -> None:
        try:
            await self.gw.link.publish(op.topic, op.payload,
                                       reliable=bool(op.flags & wire.PublishFlag.RELIABLE),
                                       delay_sensitive=bool(op.flags & wire.PublishFlag.DELAY_SENSITIVE))
            self.gw.counters["published"] += 1
            if op.request_id:
                await self._send(wire.ack(op.request_id))
        except (ClientError, ValueError) as e:
            self.gw.counters["publish_errors"] += 1
            if op.request_id:
                await self._send(wire.error(op.request_id, str(e)))
        finally:
            self.release(len(op.payload))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    # -- delivery ----------------------------------------------------------------------------------

    async def _deliver(self) -> None:
        """Round-robin over this browser's subscriptions, one message each, as fast as its socket
        takes them: a slow browser waits here, on its own socket, and nobody else does."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._deliver_forever()

    async def _deliver_forever(self) -> None:
        counters = self.gw.counters
        while True:
            held = self.held
            if not any(r.pending or r.next < r.window.first
                       for sub_id, (_, r) in self.readers.items() if sub_id not in held):
                self.wake.clear()
                await self.wake.wait()
            for sub_id, (_, reader) in list(self.readers.items()):
                if sub_id in held:
                    continue
                entry, skipped = reader.take()
                if skipped is not None:
                    kind = NoticeKind.GAP if skipped.reliable else NoticeKind.LIVE_DROPPED
                    counters["reliable_gap_messages" if skipped.reliable else "live_dropped"] += skipped.count
                    await self.ws.send_bytes(wire.notice(sub_id, kind, skipped.count))
                if entry is not None:
                    flags = MessageFlag.REPLAYED if entry.index < reader.replay_until else MessageFlag.NONE
                    data = entry.data
                    if sub_id in self.http_readers:
                        h = files.head(data)
                        if h is not None and h.count > 1:
                            if h.message_id in self.announced:
                                continue  # announced with an earlier fragment: the page GETs it
                            self._announce(h.message_id)
                            flags |= MessageFlag.FILE
                            data = data[:h.body_at]
                    head = wire.message_header(sub_id, flags, entry.received_ms, entry.topic)
                    await self.ws.send_bytes(head + data)
                    counters["delivered"] += 1

    def _announce(self, message_id: str) -> None:
        self.announced[message_id] = None
        if len(self.announced) > 4096:
            del self.announced[next(iter(self.announced))]


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# -- HTTP --------------------------------------------------------------------------------------------

NO_CACHE = {"Cache-Control": "no-cache"}
"""Apps and library are small and change with the gateway; browsers revalidate each load."""


def make_app(gw: Gateway) -> web.Application:
    async def websocket(request: web.Request) -> web.StreamResponse:
        ws = GatewaySocket(max_msg_size=wire.MAX_WS_MESSAGE_BYTES, compress=False)
        await ws.prepare(request)
        if gw.lost.done():
            await ws.close(code=CloseCode.INTERNAL_ERROR, message=b"the gateway lost its relay")
            return ws
        s = BrowserSession(gw, ws)
        gw.sessions.add(s)
        gw.counters["browsers_connected"] += 1
        try:
            await s.serve()
        finally:
            gw.sessions.discard(s)
        return ws

    async def library(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(LIBRARY, headers={**NO_CACHE, "Content-Type": "text/javascript"})

    async def status(request: web.Request) -> web.StreamResponse:
        return web.json_response(gw.status())

    async def gateways(request: web.Request) -> web.StreamResponse:
        own = f"ws://{request.host}/ws"
        return web.json_response({"dc": gw.link.dc, "gateways": [own, *[p for p in gw.peers if p != own]]})

    async def app_file(request: web.Request) -> web.StreamResponse:
        folder = APP_ROUTES.get(request.match_info["app"])
        if folder is None or gw.static_dir is None:
            raise web.HTTPNotFound()
        root = (gw.static_dir / folder).resolve()
        path = (root / (request.match_info["path"] or "index.html")).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=NO_CACHE)

    async def app_root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"/{request.match_info['app']}/")

    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/chat/")

    app = web.Application(client_max_size=1024)
    app.add_routes([web.get("/ws", websocket), web.get("/stemflow.js", library),
                    web.get("/status", status), web.get("/gateways.json", gateways),
                    *httpfiles.routes(gw),
                    web.get("/", index), web.get("/{app}", app_root),
                    web.get("/{app}/{path:.*}", app_file)])
    return app
