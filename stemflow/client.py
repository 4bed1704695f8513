"""The Pub/Sub client: connect to a relay, publish (unary or streaming), subscribe.

Owns the application's side of the wire: the client connection (HELLO, ADVERTISE, SUBSCRIBE,
DATA, ACK), the publisher id and per-topic sequence numbers that let egress relays restore
order, client-side flow control (a slow reader pauses its socket; a fast writer awaits
`drain`), and a synchronous wrapper for scripts. Routing is the relays' and the controller's.

    async with await connect("127.0.0.1:7000") as c:
        await c.publish("news", b"hello")            # returns once the relay accepted it
        async for msg in await c.subscribe("news"):  # Message(topic, data, seq, origin)
            ...

Reliable messages are kept until the overlay acknowledges them end to end (`flush()`,
`publish(..., acked=True)`); `connect(..., reconnect=True)` reconnects after a lost relay (to
the next address given), resends what is not acknowledged and resumes subscriptions from the
topic's history without gaps or duplicates (docs/relays.md, "Exactly once").

Messages may carry headers (`publish(..., headers={...})`, `msg.headers`); request/reply rides
on them: `await c.request("svc", b"q")` returns the first reply, a responder answers with
`await c.respond(msg, b"a")` (`stemflow.headers` says how). A subscription may name a pattern,
as in NATS: `chat.*` covers `chat.room1`, `video.>` covers `video.4k.key` (`stemflow.subjects`);
its messages name the topic they were published on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import NamedTuple

from stemflow.headers import REPLY_TO, REQUEST_ID, decode_headers, encode_headers
from stemflow.outstanding import OUTSTANDING_MAX_BYTES, Outstanding
from stemflow.protocol import (
    HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    Flag,
    Frame,
    FrameType,
    ProtocolError,
    ReceiveBuffer,
    advertise_payload,
    data_header,
    encode,
    encode_json,
    history_request_payload,
    session_id,
    split_address,
)
from stemflow.subjects import PatternError, is_pattern, matches, validate_pattern

CONNECT_TIMEOUT_S = 5.0
RTT_PROBES = 3
"""Pings per candidate relay when choosing the closest; the minimum of three filters a stall."""
SUBSCRIBER_BUFFER_BYTES = 8 << 20
"""Received, not yet consumed bytes per client before it stops reading (the relay then applies
its live/reliable policy); reading resumes at half."""
WRITE_HIGH_BYTES = 1 << 20
"""A streaming publisher may run this far ahead of the socket before `drain` waits: a few
64 KiB messages, so the syscall count stays low without hiding backpressure."""
COALESCE_BYTES = 64 << 10
"""Small messages queued in one loop iteration leave in one write up to this size: one 64 KiB
message, or 64 of 1 KiB, per syscall."""
MAX_HISTORY = 10_000
"""Most past messages one subscription may ask for (a relay's rule may keep fewer)."""
DATA = int(FrameType.DATA)
HEADERS = int(Flag.HEADERS)
RELIABLE = int(Flag.RELIABLE)
RECONNECT_DELAY_S = 0.1
"""Between attempts to reach a relay after the connection was lost: a relay that restarts, or
the next one, answers on loopback or in a datacenter well within this."""
RECONNECT_TIMEOUT_S = 30.0
"""How long a client with `reconnect=True` keeps trying before it fails for good."""


class ClientError(Exception):
    """The relay refused something or went away."""


class Message(NamedTuple):
    topic: str
    data: bytes
    seq: int
    origin: int
    headers: dict[str, str] | None = None
    """The message's headers, None when it has none."""
    history: bool = False
    """One of the topic's past messages, asked for with `subscribe(topic, history=N)`."""

    @property
    def reply(self) -> str | None:
        """The topic a requester waits on for the answer (`Client.respond`), if any."""
        return self.headers.get(REPLY_TO) if self.headers else None


REQUEST_TIMEOUT_S = 5.0
"""How long `request` waits for a reply by default. The first request between two relays may
wait for the controller to route the reply's topic (a plan cycle); later ones do not."""


CLOSE_FLUSH_S = 5.0
"""How long `close` waits for buffered bytes to reach the socket before closing anyway."""


class _Protocol(asyncio.BufferedProtocol):
    """The client's connection: frames are parsed in place in one receive buffer."""

    def __init__(self, client: Client):
        self.c = client
        self.rb = ReceiveBuffer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.c._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.set_write_buffer_limits(WRITE_HIGH_BYTES)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = {"role": "client"} if self.c.token is None else {"role": "client", "token": self.c.token}
        transport.write(encode_json(FrameType.HELLO, hello))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.rb.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.rb.updated(nbytes)
        try:
            self._parse()
        except ProtocolError as e:
            self.c._fail(ClientError(f"bad data from relay: {e}"))
            if self.c._transport is not None:
                self.c._transport.close()
        self.rb.consumed()

    def eof_received(self) -> bool:
        if len(self.rb) and not self.c.reconnect:
            self.c._fail(ClientError("relay closed the connection mid-frame"))
        return False

    def _parse(self) -> None:
        c, rb = self.c, self.rb
        subs, names = c._subs, c._names
        woken = set()
        view = rb.view
        try:
            for typ, flags, route, sess, origin, seq, pos, stop in rb.frames():
                if typ == DATA:
                    targets = subs.get(sess)
                    if targets:
                        headers = None
                        if flags & HEADERS:
                            try:
                                headers, data = decode_headers(view[pos + HEADER_SIZE:stop])
                            except ProtocolError:  # one publisher's bad block costs its message
                                c.malformed_messages += 1
                                continue
                        else:
                            data = bytes(view[pos + HEADER_SIZE:stop])  # as `frames()` says
                        for sub in targets:  # (one bound by a pattern is told the topic)
                            topic = sub.topic if sub.sid == sess else names[sess]
                            sub._queue.append(Message(topic, data, seq, origin, headers))
                            sub._last[topic, origin] = seq
                            sub._bytes += len(data)
                            woken.add(sub)
                else:
                    self._control(Frame(FrameType(typ), sess, seq, flags, route, origin,
                                        rb.payload(pos, stop)))
        finally:
            for sub in woken:
                sub._wake()
                if sub._bytes > SUBSCRIBER_BUFFER_BYTES and not c._reading_paused:
                    c._reading_paused = True
                    if c._transport is not None:
                        c._transport.pause_reading()

    def _control(self, f: Frame) -> None:
        c = self.c
        if f.type is FrameType.ACK:
            fut = c._acks.pop((f.session, f.seq), None)
            if fut is not None and not fut.done():
                fut.set_result(not f.flags & Flag.DROPPED)
        elif f.type is FrameType.DELIVERED:
            if f.origin == c.origin:
                c._delivered(f.session, f.seq, bool(f.flags & Flag.RESEND))
        elif f.type is FrameType.PONG:
            fut = c._pings.pop(f.seq, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif f.type is FrameType.HELLO:
            if not c._ready.done():
                hello = f.json()
                c._ready.set_result(hello if isinstance(hello, dict) else {})
        elif f.type is FrameType.TOPIC:
            c._named(f.session, f.text())
        elif f.type is FrameType.HISTORY:
            asked = c._history.get(f.session)
            if asked is not None:
                headers, data = None, bytes(f.payload)
                if f.flags & HEADERS:
                    try:
                        headers, data = decode_headers(f.payload)
                    except ProtocolError:
                        c.malformed_messages += 1
                        return
                asked[1].append(Message(asked[0], data, f.seq, f.origin, headers, history=True))
        elif f.type is FrameType.HISTORY_END:
            asked = c._history.pop(f.session, None)
            if asked is not None:
                body = f.json()
                if not isinstance(body, dict) or body.get("error"):
                    reason = body.get("error") if isinstance(body, dict) else "malformed answer"
                    asked[2].set_exception(ClientError(f"no history of {asked[0]!r}: {reason}"))
                else:
                    asked[2].set_result(asked[1])
        elif f.type is FrameType.ERROR:
            c._fail(ClientError(f"relay closed the connection: {f.text()}"))

    def pause_writing(self) -> None:
        if self.c._can_write is None or self.c._can_write.done():
            self.c._can_write = self.c._loop.create_future()

    def resume_writing(self) -> None:
        if self.c._reconnecting is not None or self.c._protocol is not self:
            return  # writers wait for the new connection to be restored
        fut = self.c._can_write
        self.c._can_write = None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        c = self.c
        if c._protocol is not self:
            return  # a connection that was replaced already
        if c.reconnect and not c._closing and c._error is None:
            c._lost()
        else:
            c._fail(ClientError(f"connection to relay lost: {exc or 'closed'}"))


class Client:
    """One connection to one relay. Create with `await connect(...)`."""

    def __init__(self, token: str | None = None, tls: ssl.SSLContext | None = None,
                 reconnect: bool = False, fallback: Sequence[str] = ()) -> None:
        self.token = token
        """The credential HELLO carries (`stemflow token issue`); None where relays check none."""
        self.tls = tls
        """TLS to relays with certificates (`stemflow.security.tls.client_context`); None: TCP."""
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._ready: asyncio.Future[dict] = self._loop.create_future()
        self._acks: dict[tuple[int, int], asyncio.Future[bool]] = {}
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._subs: dict[int, list[Subscription]] = {}
        """Per session id on the wire, whom its messages go to: subscriptions to the topic and
        those to patterns that cover it."""
        self._patterns: list[Subscription] = []
        """Subscriptions to patterns (`chat.*`), bound to topics as their names become known."""
        self._names: dict[int, str] = {}
        """Topic of each session id this client has heard of: those it subscribed to and those a
        relay named (TOPIC) before delivering them for a pattern."""
        self._history: dict[int, tuple[str, list[Message], asyncio.Future[list[Message]]]] = {}
        """Per session, the one history request in flight: the topic asked about, what came so far."""
        self._history_turn: dict[int, tuple[asyncio.Lock, list[int]]] = {}
        """Per session with requests waiting: the lock that orders them and how many want it."""
        self._advertised: dict[int, int] = {}
        self._seq: dict[int, int] = {}
        self._can_write: asyncio.Future[None] | None = None
        self._wbuf: list[bytes] = []
        self._wbytes = 0
        self._flush_scheduled = False
        self._reading_paused = False
        self._error: ClientError | None = None
        self._closing = False
        self.malformed_messages = 0
        """Messages dropped because their header block was malformed."""
        self._inbox: Subscription | None = None
        self._replies: dict[str, asyncio.Future[Message]] = {}
        self._request_ids = itertools.count(1)
        self._inbox_task: asyncio.Task | None = None
        self.origin = int.from_bytes(os.urandom(4), "big")
        """The publisher id egress relays order and de-duplicate by; it outlives reconnects."""
        self.relay = ""
        self.address = ""
        self.reconnect = reconnect
        """Reconnect after a lost relay (to the next of `addresses`) instead of failing."""
        self.addresses: list[str] = list(fallback)
        """Where to reconnect, in order (the connected relay is tried last)."""
        self.acks = False
        """Whether the relay acknowledges reliable messages end to end (its HELLO says)."""
        self.outstanding = Outstanding()
        self._ack_waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}
        self._room: asyncio.Future[None] | None = None
        self._protocol: _Protocol | None = None
        self._advertise_frames: dict[int, bytes] = {}
        self._reconnecting: asyncio.Task | None = None
        self.reconnects = 0
        """Connections re-established after a loss."""
        self.resume_gaps = 0
        """Subscriptions resumed without history (the relay keeps none of the topic): messages
        published while the connection was down may be missing from them."""

    # -- life ------------------------------------------------------------------------------------------

    async def _open(self, address: str, timeout_s: float) -> None:
        host, port = split_address(address)
        self.address = address
        if address not in self.addresses:
            self.addresses.append(address)
        if self._ready.done():
            self._ready = self._loop.create_future()

        def protocol() -> _Protocol:
            self._protocol = _Protocol(self)
            return self._protocol
        await asyncio.wait_for(self._loop.create_connection(
            protocol, host, port, ssl=self.tls, server_hostname=host if self.tls else None),
            timeout_s)
        hello = await asyncio.wait_for(self._ready, timeout_s)
        self.relay = str(hello.get("dc", ""))
        self.acks = bool(hello.get("acks"))

    async def close(self) -> None:
        """Close once what was published has left this process, and (relays that acknowledge)
        been acknowledged end to end, each wait at most CLOSE_FLUSH_S: asyncio flushes a closed
        transport only while its loop runs, and a program that closes and exits would otherwise
        lose the tail of a stream."""
        if self._inbox_task is not None:
            self._inbox_task.cancel()
        if self._reconnecting is not None:
            self._closing = True
            self._reconnecting.cancel()
        if self._transport is not None:
            t = self._transport
            await self.drain()
            deadline = self._loop.time() + CLOSE_FLUSH_S
            if self.acks and self.outstanding:
                # Until acknowledged end to end: a socket closed with the relay's DELIVERED
                # frames unread is reset, and the reset drops what the kernel had not sent yet.
                with contextlib.suppress(TimeoutError, ClientError):
                    await asyncio.wait_for(self.flush(), CLOSE_FLUSH_S)
            while (self._transport is not None and t.get_write_buffer_size()
                   and self._loop.time() < deadline):
                await asyncio.sleep(0.001)
            self._closing = True
            t.close()
            self._fail(ClientError("client closed"))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _fail(self, err: ClientError) -> None:
        if self._error is None:
            self._error = err
        self._transport = None
        asked = [a[2] for a in self._history.values()]
        self._history.clear()
        waiters = [w for ws in self._ack_waiters.values() for _, w in ws]
        self._ack_waiters.clear()
        for fut in [*self._acks.values(), *self._pings.values(), self._ready, self._can_write, *asked,
                    self._room, *waiters]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
                fut.exception()  # mark retrieved: nobody may be waiting
        self._acks.clear()
        self._pings.clear()
        for subs in self._subs.values():
            for s in subs:
                s._wake()

    def _write(self, data: bytes) -> None:
        """Queue bytes; they leave together at the end of this loop iteration (one syscall
        for a burst of small messages) or as soon as COALESCE_BYTES have gathered."""
        if self._transport is None or self._reconnecting is not None:
            if self._reconnecting is not None:
                return  # sent again from what is kept, or (live) lost as a full queue loses it
            raise self._error or ClientError("not connected")
        self._wbuf.append(data)
        self._wbytes += len(data)
        if self._wbytes >= COALESCE_BYTES:
            self._flush_writes()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        self._flush_scheduled = False
        if self._wbuf and self._transport is not None:
            buf = self._wbuf
            self._wbuf, self._wbytes = [], 0
            self._transport.write(buf[0] if len(buf) == 1 else b"".join(buf))

    async def drain(self) -> None:
        """Wait until the socket buffer has room (streaming publishers call this), and until
        unacknowledged reliable messages are below `OUTSTANDING_MAX_BYTES`."""
        self._flush_writes()
        if self._can_write is not None:
            await self._can_write
        while self.outstanding.bytes > OUTSTANDING_MAX_BYTES and self._error is None:
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            await self._room
        if self._transport is None and not self._closing:
            raise self._error or ClientError("not connected")

    async def ping(self) -> float:
        """Round-trip time to the relay, in seconds."""
        seq = len(self._pings) + int(time.monotonic_ns() & 0xFFFFFFFF)
        fut = self._pings[seq] = self._loop.create_future()
        t0 = time.perf_counter()
        self._write(encode(FrameType.PING, b"", seq=seq))
        await fut
        return time.perf_counter() - t0

    # -- publishing ------------------------------------------------------------------------------------

    def _advertise(self, topic: str, flags: int, max_rate_mbps: float | None = None,
                   latency_budget_ms: float | None = None) -> int:
        sid = session_id(topic)
        if sid not in self._advertised:
            if is_pattern(topic):
                raise ValueError(f"cannot publish on {topic!r}: '*' and '>' are wildcards, for "
                                 "subscriptions only")
            payload = advertise_payload(topic, max_rate_mbps=max_rate_mbps,
                                        latency_budget_ms=latency_budget_ms)
            frame = self._advertise_frames[sid] = encode(FrameType.ADVERTISE, payload, session=sid,
                                                         flags=flags)
            self._write(frame)
            self._advertised[sid] = flags
            self._seq.setdefault(sid, 0)
        return sid

    def _next_seq(self, sid: int) -> int:
        seq = self._seq[sid]
        self._seq[sid] = seq + 1
        return seq

    async def publish(self, topic: str, data: bytes, *, delay_sensitive: bool = False,
                      max_rate_mbps: float | None = None,
                      latency_budget_ms: float | None = None,
                      headers: Mapping[str, str] | None = None, acked: bool = False) -> bool:
        """Unary publish: returns when the ingress relay has accepted the message; False if the
        relay knows nobody subscribes to the topic (here or elsewhere), so it went nowhere.
        `acked=True`: returns only once every relay that delivers the topic has delivered it
        (the client keeps it until then in any case, and resends it after a lost relay).

        The first publish on a topic tells the overlay the session's class and, if given, the
        rate it will not exceed and the one-way delay it can bear; the controller plans with
        them (a delay-sensitive session without a rate gets the controller's default cap)."""
        flags = Flag.RELIABLE | (Flag.DELAY_SENSITIVE if delay_sensitive else 0)
        sid = self._advertise(topic, flags, max_rate_mbps, latency_budget_ms)
        seq = self._next_seq(sid)
        frame = _data_frame(data, sid, seq, flags | Flag.ACK_REQUESTED, self.origin, headers)
        fut = self._acks[(sid, seq)] = self._loop.create_future()
        if self.acks:
            self.outstanding.add(sid, seq, frame)
        elif acked:
            raise ClientError(f"relay {self.relay} does not acknowledge end to end (--no-acks)")
        self._write(frame)
        went = await fut
        if acked:
            await self._acknowledged(sid, seq)
        return went

    async def flush(self) -> None:
        """Wait until every reliable message published so far is acknowledged end to end."""
        self._flush_writes()
        for sid in list(self.outstanding.sessions):
            last = self.outstanding.last_seq(sid)
            if last is not None:
                await self._acknowledged(sid, last)

    async def _acknowledged(self, sid: int, seq: int) -> None:
        q = self.outstanding.sessions.get(sid)
        if not q or q[0][0] > seq:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._ack_waiters.setdefault(sid, []).append((seq, fut))
        await fut

    def _delivered(self, sid: int, below: int, resend: bool) -> None:
        """DELIVERED from the relay: forget what is acknowledged, wake who waits for it, and on
        RESEND send the rest again (a relay on the way was lost)."""
        if self.outstanding.acknowledged(sid, below):
            waiters = self._ack_waiters.get(sid)
            if waiters:
                done = [w for w in waiters if w[0] < below]
                self._ack_waiters[sid] = [w for w in waiters if w[0] >= below]
                for _, fut in done:
                    if not fut.done():
                        fut.set_result(None)
            room = self._room
            if room is not None and not room.done() and self.outstanding.bytes <= OUTSTANDING_MAX_BYTES:
                room.set_result(None)
        if resend:
            for frame in self.outstanding.frames(sid):
                self._write(frame)

    # -- reconnecting ----------------------------------------------------------------------------

    def _lost(self) -> None:
        """The relay went away: keep every state, hold writers, and reconnect."""
        self._transport = None
        if self._reconnecting is not None:
            return  # an attempt lost its new connection: the attempt tries the next relay
        self._wbuf, self._wbytes = [], 0
        if self._can_write is None or self._can_write.done():
            self._can_write = self._loop.create_future()
        self._reconnecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        deadline = self._loop.time() + RECONNECT_TIMEOUT_S
        current = self.addresses.index(self.address) if self.address in self.addresses else -1
        order = self.addresses[current + 1:] + self.addresses[:current + 1]
        try:
            while True:
                for address in order:
                    try:
                        await self._open(address, min(CONNECT_TIMEOUT_S, RECONNECT_DELAY_S * 10))
                        break
                    except (TimeoutError, OSError, ClientError):
                        if self._transport is not None:  # connected, but no HELLO came
                            self._transport.abort()
                            self._transport = None
                        continue
                else:
                    if self._loop.time() > deadline:
                        self._fail(ClientError(f"relay lost, and none of {order} answered within "
                                               f"{RECONNECT_TIMEOUT_S:g} s"))
                        return
                    await asyncio.sleep(RECONNECT_DELAY_S)
                    continue
                break
        finally:
            self._reconnecting = None
        self.reconnects += 1
        self._restore()

    def _restore(self) -> None:
        """On a new connection: advertise and subscribe again, resend what is not acknowledged,
        resume the subscriptions, and let writers go on."""
        for frame in self._advertise_frames.values():
            self._write(frame)
        for sid, subs in self._subs.items():  # topics subscribed by name
            if any(s.sid == sid for s in subs):
                self._write(encode(FrameType.SUBSCRIBE, self._topic_of(sid).encode(), session=sid))
        for pattern in dict.fromkeys(p.topic for p in self._patterns):
            self._write(encode(FrameType.SUBSCRIBE, pattern.encode(), session=session_id(pattern)))
        for seq in self._pings:
            self._write(encode(FrameType.PING, b"", seq=seq))
        asked = [a[2] for a in self._history.values()]
        self._history.clear()
        for fut in asked:
            if not fut.done():
                fut.set_exception(ClientError("connection to relay lost during a history request"))
                fut.exception()
        if self.acks:
            for sid in self.outstanding.sessions:
                for frame in self.outstanding.frames(sid):
                    self._write(frame)
        else:  # nothing kept to resend: the relay's ACK for them will not come
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(ClientError("connection to relay lost before it accepted"))
                    fut.exception()
            self._acks.clear()
        for sub in self._subscriptions():
            self._loop.create_task(self._resume(sub, self._begin_resume(sub)))
        fut, self._can_write = self._can_write, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    @staticmethod
    def _begin_resume(sub: Subscription) -> int:
        """Where `sub` resumes from: called before the new connection can bring a message (the
        SUBSCRIBE it answers is written with it), so the start is the newest message received
        before the loss. A resume cut by another lost connection is taken over by the next one
        from the same start, so nothing that came live in between can hide a gap."""
        if sub._resuming is None:
            sub._resuming = (dict(sub._last), sub._queue, [])
            sub._ready = False
        else:
            sub._resuming[2].extend(sub._queue)
        sub._queue = deque()
        sub._resume_gen += 1
        return sub._resume_gen

    def _subscriptions(self) -> list[Subscription]:
        """Every open subscription once (a pattern's is listed under each topic it is bound to)."""
        return list(dict.fromkeys([*(s for subs in self._subs.values() for s in subs), *self._patterns]))

    def _topic_of(self, sid: int) -> str:
        return next(s.topic for s in self._subs[sid] if s.sid == sid)

    def _bound(self, sub: Subscription) -> list[tuple[int, str]]:
        """(session, topic) of every topic `sub` receives: its own, or those its pattern covers."""
        if sub not in self._patterns:
            return [(sub.sid, sub.topic)]
        return [(sid, self._names[sid]) for sid, subs in self._subs.items() if sub in subs and sid != sub.sid]

    async def _resume(self, sub: Subscription, gen: int) -> None:
        """Deliver what `sub` missed while disconnected, from the history at the relay of each
        topic it receives (a pattern's: each covered topic it has had messages of), before what
        comes live; nothing twice (per topic and publisher, by sequence number)."""
        assert sub._resuming is not None
        last, stash, earlier = sub._resuming
        past: list[Message] = []
        for sid, topic in self._bound(sub):
            try:
                past += await self._ask_history(sub, MAX_HISTORY, sid, topic)
            except ClientError:
                if gen != sub._resume_gen:
                    return  # a newer attempt took over
                self.resume_gaps += 1
        if gen != sub._resume_gen:
            return
        seen: set[tuple[str, int, int]] = set()
        fresh: list[Message] = []
        for m in [*(m._replace(history=False) for m in past if (m.topic, m.origin) in last), *earlier,
                  *sub._queue]:
            key = (m.topic, m.origin, m.seq)
            if key not in seen and not m.seq <= last.get((m.topic, m.origin), -1):
                seen.add(key)
                fresh.append(m)
        by_publisher: dict[tuple[str, int], list[Message]] = {}
        for m in fresh:
            by_publisher.setdefault((m.topic, m.origin), []).append(m)
        ordered = {k: iter(sorted(ms, key=lambda m: m.seq)) for k, ms in by_publisher.items()}
        fresh = [next(ordered[m.topic, m.origin]) for m in fresh]  # each publisher's in order, in place
        sub._resuming = None
        sub._queue = deque([*stash, *fresh])
        sub._bytes = sum(len(m.data) for m in sub._queue)
        for m in fresh:
            sub._last[m.topic, m.origin] = max(sub._last.get((m.topic, m.origin), -1), m.seq)
        sub._ready = True
        sub._wake()

    async def request(self, topic: str, data: bytes, *, timeout_s: float = REQUEST_TIMEOUT_S,
                      headers: Mapping[str, str] | None = None,
                      delay_sensitive: bool = True) -> Message:
        """Publish a request and return the first reply (`nats request`). Replies come to one
        inbox topic per client, matched by a request id; raises ClientError when nobody
        subscribes to `topic` ("no responders") and TimeoutError when no reply comes in time."""
        if self._inbox is None:
            self._inbox = await self.subscribe(f"_INBOX.{self.origin:08x}.{os.urandom(4).hex()}")
            self._spawn_inbox(self._inbox)
        rid = str(next(self._request_ids))
        fut = self._replies[rid] = self._loop.create_future()
        try:
            if not await self.publish(topic, data, delay_sensitive=delay_sensitive,
                                      headers={**(headers or {}), REPLY_TO: self._inbox.topic,
                                               REQUEST_ID: rid}):
                raise ClientError(f"no responders: nobody subscribes to {topic!r}")
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._replies.pop(rid, None)

    def _spawn_inbox(self, inbox: Subscription) -> None:
        async def route() -> None:
            async for msg in inbox:
                fut = self._replies.get((msg.headers or {}).get(REQUEST_ID, ""))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        self._inbox_task = self._loop.create_task(route())

    async def respond(self, request: Message, data: bytes, *,
                      headers: Mapping[str, str] | None = None) -> bool:
        """Answer `request` (a message from `request`); False if the requester is gone."""
        if request.reply is None:
            raise ClientError(f"the message on {request.topic!r} asks for no reply")
        rid = (request.headers or {}).get(REQUEST_ID)
        return await self.publish(request.reply, data, delay_sensitive=True,
                                  headers={**(headers or {}), **({REQUEST_ID: rid} if rid else {})})

    def open_stream(self, topic: str, *, delay_sensitive: bool = False, reliable: bool = True,
                    max_rate_mbps: float | None = None,
                    latency_budget_ms: float | None = None) -> Stream:
        """Streaming publish: `send` many messages, `await drain()` now and then (or `write`).
        `max_rate_mbps` and `latency_budget_ms` as for `publish`."""
        flags = (Flag.RELIABLE if reliable else 0) | (Flag.DELAY_SENSITIVE if delay_sensitive else 0)
        return Stream(self, topic, self._advertise(topic, flags, max_rate_mbps, latency_budget_ms),
                      int(flags))

    # -- subscribing -----------------------------------------------------------------------------------

    async def subscribe(self, topic: str, history: int = 0) -> Subscription:
        """Subscribe; the returned object is an async iterator of `Message`s.

        `history=N`: its first messages are the topic's last N as the overlay keeps them
        (`Message.history` true; relays started with `--history`, docs/relays.md), then the
        live ones, none twice. Returns once the past has come; raises ClientError if the relay
        keeps no history of the topic."""
        if not 0 <= history <= MAX_HISTORY:
            raise ValueError(f"history={history}: expected 0..{MAX_HISTORY} past messages")
        if is_pattern(topic):
            return await self._subscribe_pattern(topic, history)
        sid = session_id(topic)
        sub = Subscription(self, topic, sid)
        first = not any(s.sid == sid for s in self._subs.get(sid, ()))
        if history:
            sub._ready = False  # live messages queue behind the past, which comes first
        self._subs.setdefault(sid, []).append(sub)
        self._named(sid, topic)
        if first:
            self._write(encode(FrameType.SUBSCRIBE, topic.encode(), session=sid))
            await self.ping()  # the relay handled SUBSCRIBE before it answers the ping
        if history:
            try:
                sub._replay(await self._ask_history(sub, history))
            except BaseException:
                sub.unsubscribe()
                raise
        return sub

    async def _subscribe_pattern(self, pattern: str, history: int) -> Subscription:
        """A subscription to every topic `pattern` covers (NATS's `*` and `>`)."""
        try:
            validate_pattern(pattern)
        except PatternError as e:
            raise ValueError(str(e)) from None
        if history:
            raise ValueError(f"history of a pattern ({pattern!r}) is not kept: ask for the "
                             "history of a topic")
        sub = Subscription(self, pattern, session_id(pattern))
        first = not any(p.topic == pattern for p in self._patterns)
        self._patterns.append(sub)
        for sid, name in self._names.items():
            if matches(pattern, name):
                self._subs.setdefault(sid, []).append(sub)
        if first:
            self._write(encode(FrameType.SUBSCRIBE, pattern.encode(), session=sub.sid))
            await self.ping()
        return sub

    def _named(self, sid: int, topic: str) -> None:
        """`sid` is `topic`'s: pattern subscriptions that cover it get its messages from now on."""
        if self._names.get(sid) == topic:
            return
        self._names[sid] = topic
        subs = self._subs.get(sid, [])
        bound = [p for p in self._patterns if matches(p.topic, topic) and p not in subs]
        if bound:
            self._subs[sid] = [*subs, *bound]

    async def _ask_history(self, sub: Subscription, count: int, sid: int | None = None,
                           topic: str | None = None) -> list[Message]:
        """The past of `sub`'s topic (or of `topic`, session `sid`, one its pattern covers). One
        request per session at a time: answers carry no id the HISTORY frames repeat."""
        sid, topic = (sub.sid, sub.topic) if sid is None or topic is None else (sid, topic)
        lock, users = self._history_turn.setdefault(sid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                fut: asyncio.Future[list[Message]] = self._loop.create_future()
                self._history[sid] = (topic, [], fut)
                self._write(encode(FrameType.HISTORY_REQUEST,
                                   history_request_payload(topic, count), session=sid))
                return await fut
        finally:
            users[0] -= 1
            if not users[0]:
                del self._history_turn[sid]

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._patterns:
            self._patterns.remove(sub)
            for sid in [sid for sid, subs in self._subs.items() if sub in subs]:
                self._drop_target(sid, sub)
            if not any(p.topic == sub.topic for p in self._patterns):
                self._tell_unsubscribe(sub)
            return
        if sub.sid in self._subs:
            self._drop_target(sub.sid, sub)
            if not any(s.sid == sub.sid for s in self._subs.get(sub.sid, ())):
                self._tell_unsubscribe(sub)

    def _drop_target(self, sid: int, sub: Subscription) -> None:
        subs = self._subs[sid]
        if sub in subs:
            subs.remove(sub)
        if not subs:
            del self._subs[sid]

    def _tell_unsubscribe(self, sub: Subscription) -> None:
        if self._transport is not None:
            self._write(encode(FrameType.UNSUBSCRIBE, sub.topic.encode(), session=sub.sid))

    def _consumed(self, sub: Subscription) -> None:
        if self._reading_paused and all(s._bytes <= SUBSCRIBER_BUFFER_BYTES // 2
                                        for subs in self._subs.values() for s in subs):
            self._reading_paused = False
            if self._transport is not None:
                self._transport.resume_reading()


def _data_frame(data: bytes, sid: int, seq: int, flags: int, origin: int,
                headers: Mapping[str, str] | None = None) -> bytes:
    if headers:
        data = encode_headers(headers) + data
        flags |= HEADERS
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    return data_header(sid, seq, flags, origin, len(data)) + data


class Stream:
    """A streaming publisher on one topic."""

    def __init__(self, client: Client, topic: str, sid: int, flags: int):
        self.client, self.topic, self.sid, self.flags = client, topic, sid, flags

    def send(self, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Queue one message without waiting; call `drain()` regularly (or use `write`)."""
        c = self.client
        seq = c._next_seq(self.sid)
        frame = _data_frame(data, self.sid, seq, self.flags, c.origin, headers)
        if self.flags & RELIABLE and c.acks:
            c.outstanding.add(self.sid, seq, frame)
        c._write(frame)

    async def write(self, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send(data, headers)
        c = self.client
        if c._can_write is not None or c.outstanding.bytes > OUTSTANDING_MAX_BYTES:
            await c.drain()

    async def drain(self) -> None:
        await self.client.drain()


class Subscription:
    """Messages of one topic, in order per publisher."""

    def __init__(self, client: Client, topic: str, sid: int):
        self.client, self.topic, self.sid = client, topic, sid
        self._queue: deque[Message] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._ready = True
        """False while the past asked for has not come: live messages wait behind it."""
        self._resuming: tuple[dict[int, int], deque[Message], list[Message]] | None = None
        """While resuming: where it started, what was queued then, what came live since."""
        self._resume_gen = 0
        self._last: dict[tuple[str, int], int] = {}
        """Per (topic, publisher), the newest sequence number received: where a resume starts
        (a pattern's topics each have their own sequence numbers)."""
        self._seen: set[tuple[int, int]] | None = None
        """(origin, seq) of the past messages, so a live copy of one is not delivered again."""
        self.history: list[Message] = []
        """The topic's past as it came (`subscribe(history=N)`); they are also the first
        messages the subscription yields."""

    def _replay(self, past: list[Message]) -> None:
        """The past has come: it goes first, then the live messages that queued meanwhile."""
        seen = {(m.origin, m.seq) for m in past}
        live = [m for m in self._queue if (m.origin, m.seq) not in seen]
        self._queue = deque([*past, *live])
        self._bytes = sum(len(m.data) for m in self._queue)
        self._seen, self.history, self._ready = seen, past, True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        while True:
            while not self._queue or not self._ready:
                if self.client._error is not None:
                    raise StopAsyncIteration
                self._waiter = self.client._loop.create_future()
                await self._waiter
                self._waiter = None
            msg = self._queue.popleft()
            self._bytes -= len(msg.data)
            if self.client._reading_paused:
                self.client._consumed(self)
            if self._seen is None or msg.history or (msg.origin, msg.seq) not in self._seen:
                return msg

    async def get(self, timeout_s: float | None = None) -> Message:
        """The next message (raises TimeoutError after `timeout_s`)."""
        return await asyncio.wait_for(self.__anext__(), timeout_s)

    def unsubscribe(self) -> None:
        self.client._unsubscribe(self)


async def connect(relays: str | Sequence[str], timeout_s: float = CONNECT_TIMEOUT_S,
                  token: str | None = None, tls: ssl.SSLContext | None = None,
                  reconnect: bool = False, fallback: Sequence[str] = ()) -> Client:
    """Connect to a relay; given several, to the one with the lowest measured RTT. `token`: the
    client's credential, for relays that check them; `tls`: for relays that speak TLS.
    `reconnect`: after a lost connection, reconnect to the next of `fallback` and the given
    relays (in that order), resend, and resume subscriptions, instead of failing."""
    addrs = [relays] if isinstance(relays, str) else list(relays)
    if not addrs:
        raise ValueError("connect() needs at least one relay address")
    if len(addrs) == 1:
        c = Client(token, tls, reconnect, fallback)
        await c._open(addrs[0], timeout_s)
        return c
    candidates = await asyncio.gather(*(_probe(a, timeout_s, token, tls) for a in addrs),
                                      return_exceptions=True)
    ok = [x for x in candidates if isinstance(x, tuple)]
    if not ok:
        raise ClientError(f"no relay reachable among {addrs}: {candidates}")
    ok.sort(key=lambda x: x[0])
    for _, other in ok[1:]:
        await other.close()
    c = ok[0][1]
    c.reconnect = reconnect
    c.addresses = [*fallback, *(a for a in addrs if a != c.address), c.address]
    return c


async def _probe(address: str, timeout_s: float, token: str | None,
                 tls: ssl.SSLContext | None) -> tuple[float, Client]:
    c = Client(token, tls)
    await c._open(address, timeout_s)
    rtt = min([await asyncio.wait_for(c.ping(), timeout_s) for _ in range(RTT_PROBES)])
    return rtt, c


class SyncClient:
    """Blocking wrapper for scripts: the same calls, each run to completion on a private loop."""

    def __init__(self, relays: str | Sequence[str], timeout_s: float = CONNECT_TIMEOUT_S,
                 token: str | None = None, tls: ssl.SSLContext | None = None):
        self._loop = asyncio.new_event_loop()
        self._client: Client = self._loop.run_until_complete(connect(relays, timeout_s, token, tls))

    @property
    def relay(self) -> str:
        return self._client.relay

    def publish(self, topic: str, data: bytes, *, delay_sensitive: bool = False) -> bool:
        """As `Client.publish`: False if nobody subscribes to the topic."""
        return self._loop.run_until_complete(self._client.publish(topic, data,
                                                                  delay_sensitive=delay_sensitive))

    def stream_send(self, topic: str, data: bytes, *, delay_sensitive: bool = False) -> None:
        s = self._client.open_stream(topic, delay_sensitive=delay_sensitive)
        self._loop.run_until_complete(s.write(data))

    def subscribe(self, topic: str, timeout_s: float | None = None, history: int = 0) -> Iterator[Message]:
        """Subscribe now; iterate for the messages (TimeoutError after `timeout_s` of silence);
        `history` as for `Client.subscribe`."""
        sub = self._loop.run_until_complete(self._client.subscribe(topic, history))

        def messages() -> Iterator[Message]:
            while True:
                try:
                    yield self._loop.run_until_complete(sub.get(timeout_s))
                except StopAsyncIteration:
                    return
        return messages()

    def close(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
