"""The relay process: accepts clients and peer relays on one port, forwards by the controller's table.

Owns the data path — parsing each connection's receive buffer in place (`BufferedProtocol`),
choosing the route of a new frame at the ingress, resolving Replicate / Split / local delivery
per frame, and handing runs of whole frames to the outboxes in one copy — and the relay's life:
registering with the controller, reporting measurements and interest every interval, installing
table pushes, re-registering after the controller returns. Peer connections live in `peers.py`,
queues in `outbox.py`, local sessions and ordering in `sessions.py`, the wire in `protocol.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import Counter

from stemflow.protocol import (
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    MAX_TOPIC_BYTES,
    VERSION,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    encode,
    encode_json,
    header,
    parse_header,
    session_id,
    split_address,
    table_from_json,
)
from stemflow.relay.forwarding import Forwarding, Route, compile_table
from stemflow.relay.outbox import BULK_RELIABLE, DS_RELIABLE, QUEUE_CLASS, Outbox, queue_class
from stemflow.relay.peers import RECONNECT_S, TRANSPORT_HIGH_BYTES, TRANSPORT_LOW_BYTES, PeerLink
from stemflow.relay.sessions import (
    RELAY_LOST_WINDOW_S,
    REORDER_STATES_MAX,
    REORDER_TIMEOUT_S,
    LocalSession,
    Pending,
    Reorder,
)
from stemflow.relay.sockets import keeps_view, tune_socket
from stemflow.routing.route_ids import ROUTE_ID_REUSE_S

log = logging.getLogger("stemflow.relay")

REPORT_INTERVAL_S = 1.0
"""Measurements and interest go to the controller this often (the issue's default)."""
HEARTBEAT_INTERVAL_S = 0.25
"""Heartbeats between reports, so the controller can declare a relay dead well within 2 s."""
SWEEP_INTERVAL_S = 0.05
"""Timer for reorder gaps and expired pending frames; a sixth of a live session's REORDER_TIMEOUT_S."""
RELIABLE_CLASSES = (DS_RELIABLE, BULK_RELIABLE)
RETIRED_ROUTE_KEEP_S = ROUTE_ID_REUSE_S / 2
"""A route the newest table dropped still forwards this long (30 s): enough for a frame to leave
the fullest outbox on the slowest link we emulate (16 MiB at 10 Mbit/s is 13 s) and cross it."""
PUBLISHER_LINGER_S = 1.0
"""A departed publisher's interest is withdrawn this late, so its last frames (held until the
session is planned) still find a route."""
RECV_BUFFER_BYTES = 256 << 10
"""Initial receive buffer per connection; grown to fit a frame up to MAX_PAYLOAD_BYTES."""
MIN_READ_BYTES = 64 << 10
"""Compact the receive buffer when less than this is free at its end."""

DATA = int(FrameType.DATA)
PING = int(FrameType.PING)
ACK_REQUESTED = int(Flag.ACK_REQUESTED)


class Connection(asyncio.BufferedProtocol):
    """One accepted connection: a client or a peer relay, as its HELLO says."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.role = ""  # "client" or "peer", after HELLO
        self.peer_dc = ""
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray(RECV_BUFFER_BYTES)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.solo: ReadGroup | None = None
        self.read_holds = 0  # reasons not to read now: a full queue it fed, a reorder gap
        self.buffer_lent = False
        """A transport kept a view into `buf` (the socket took only part of a run written without
        a copy): Python 3.12+'s asyncio and uvloop keep the view, not a copy, so the buffer must
        not be written again; the next read goes to a fresh one."""
        self.write_paused = False
        self.outbox = Outbox()
        self.advertised: dict[int, tuple[str, int]] = {}  # sid -> (topic, flags)
        self.subscribed: set[int] = set()

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.set_write_buffer_limits(TRANSPORT_HIGH_BYTES, TRANSPORT_LOW_BYTES)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, self.relay.congestion_control)
        self.relay.connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self.buf) - self.end < MIN_READ_BYTES:
            need = 0
            if self.end - self.start >= HEADER_SIZE:  # an incomplete frame: make it fit
                length = int.from_bytes(self.buf[self.start + 20:self.start + 24], "big")
                need = HEADER_SIZE + min(length, MAX_PAYLOAD_BYTES) + MIN_READ_BYTES
            self._make_room(need)
        return self.view[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        try:
            self._process()
        except ProtocolError as e:
            self.fail(str(e))
        except Exception:  # a bug must cost one connection, never the relay
            log.exception("relay %s: error on a %s connection", self.relay.dc, self.role or "new")
            self.fail("internal error")
        if self.buffer_lent:
            self._fresh_buffer()
        elif self.start == self.end:
            self.start = self.end = 0

    def eof_received(self) -> bool:
        if self.end > self.start:
            self.relay.counters["closed_mid_frame"] += 1
            log.info("relay %s: %s connection closed mid-frame (%d bytes)", self.relay.dc,
                     self.role or "new", self.end - self.start)
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        relay = self.relay
        relay.connections.discard(self)
        if self.role == "peer":
            relay.peer_group(self.peer_dc).members.discard(self)
        self.transport = None
        self.outbox.discard()
        relay.counters["subscriber_dropped_closed"] += self.outbox.dropped_frames
        for sid in list(self.subscribed):
            relay.unsubscribe(self, sid)
        for sid in list(self.advertised):
            relay.unadvertise(self, sid, linger=True)

    # -- flow control -------------------------------------------------------------------------------

    def block(self) -> None:
        """A queue this connection fed is full: stop reading it. A peer's P connections stop
        together, or the ones still read would run ahead of the paused one and open sequence
        gaps that the egress could only close by timing out."""
        group = self._group()
        group.blocks += 1
        if group.blocks == 1:
            group.pause()

    def unblock(self) -> None:
        group = self._group()
        group.blocks -= 1
        if group.blocks == 0:
            group.resume()

    def _group(self) -> ReadGroup:
        if self.role == "peer":
            return self.relay.peer_group(self.peer_dc)
        if self.solo is None:
            self.solo = ReadGroup({self})
        return self.solo

    def hold_reading(self) -> None:
        """Stop reading for one more reason (reading resumes when every reason is released)."""
        self.read_holds += 1
        if self.read_holds == 1 and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def release_reading(self) -> None:
        self.read_holds -= 1
        if self.read_holds == 0 and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def send(self, data: bytes | memoryview, nframes: int, qclass: int, source: Connection | None) -> None:
        """Write at once when nothing waits (no copy: the transport takes what the socket does
        not), else queue a copy behind the waiting frames."""
        t = self.transport
        if t is None:
            return
        if not self.outbox and not self.write_paused:
            t.write(data)
            if source is not None and keeps_view(t, data):
                source.buffer_lent = True
        else:
            self.outbox.push(bytes(data), nframes, qclass, source)
            self.flush()

    def flush(self) -> None:
        ob, t = self.outbox, self.transport
        if t is None:
            return
        while ob and not self.write_paused:
            chunks = ob.pull()
            if len(chunks) > 1:
                t.writelines(chunks)
            else:
                t.write(chunks[0])

    def fail(self, reason: str) -> None:
        self.relay.counters["protocol_errors"] += 1
        log.warning("relay %s: closing %s connection: %s", self.relay.dc, self.role or "new", reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(FrameType.ERROR, reason.encode()[:1024]))
            self.transport.close()
        self.start = self.end = 0

    def _fresh_buffer(self) -> None:
        """Read into a new buffer from now on, keeping the incomplete frame; the old one lives
        as long as a transport still holds a view into it."""
        n = self.end - self.start
        buf = bytearray(max(RECV_BUFFER_BYTES, n + MIN_READ_BYTES))
        buf[:n] = self.buf[self.start:self.end]
        self.buf, self.view = buf, memoryview(buf)
        self.start, self.end = 0, n
        self.buffer_lent = False

    def _make_room(self, need: int = 0) -> None:
        """Move the incomplete frame to the front; grow the buffer if a frame cannot fit."""
        n = self.end - self.start
        size = max(len(self.buf), need)
        if size > len(self.buf):
            buf = bytearray(size)
            buf[:n] = self.buf[self.start:self.end]
            self.buf, self.view = buf, memoryview(buf)
        elif self.start:
            self.buf[:n] = self.buf[self.start:self.end]
        self.start, self.end = 0, n

    # -- the data path --------------------------------------------------------------------------------

    def _process(self) -> None:
        buf, pos, end = self.buf, self.start, self.end
        relay = self.relay
        fwd = relay.fwd
        routes, ingress = fwd.routes, fwd.ingress
        runs: dict[str, list[list[int]]] = {}
        local: list[tuple[int, int, int, int, int, int]] = []
        acks: list[bytes] = []
        is_client = self.role == "client"
        is_peer = self.role == "peer"
        unpack = HEADER.unpack_from
        try:
            while end - pos >= HEADER_SIZE:
                ver, typ, flags, route, sess, origin, seq, length = unpack(buf, pos)
                if ver != VERSION or length > MAX_PAYLOAD_BYTES:
                    parse_header(buf, pos)  # raises with the reason
                stop = pos + HEADER_SIZE + length
                if stop > end:
                    break
                if typ == DATA and (is_peer or is_client):
                    size = stop - pos
                    qclass = QUEUE_CLASS[flags]
                    if is_client:
                        if sess not in self.advertised:
                            raise ProtocolError(f"DATA for session {sess:#x} before ADVERTISE")
                        if flags & ACK_REQUESTED:
                            acks.append(header(FrameType.ACK, sess, seq, 0, 0, origin))
                        s = relay.sessions.get(sess)
                        if s is not None and s.subscribers:
                            local.append((sess, origin, seq, pos, stop, qclass))
                        picker = ingress.get(sess)
                        if picker is None:
                            relay.hold(sess, bytearray(buf[pos:stop]), qclass, self)
                            pos = stop
                            continue
                        route = picker.pick(size)
                        buf[pos + 3] = route
                        r = routes.get((sess, route))
                        if r is None:
                            relay.counters["no_route"] += 1
                            pos = stop
                            continue
                        peers, _ = r.resolve(size)
                    else:
                        r = routes.get((sess, route))
                        if r is None:
                            # The frame overtook our table: deliver it if we can, else hold it
                            # for the table (never guess a next hop: that could loop).
                            s = relay.sessions.get(sess)
                            if s is not None and s.subscribers:
                                local.append((sess, origin, seq, pos, stop, qclass))
                            else:
                                relay.hold(sess, bytearray(buf[pos:stop]), qclass, self, transit=True)
                            pos = stop
                            continue
                        peers, here = r.resolve(size)
                        if here:
                            local.append((sess, origin, seq, pos, stop, qclass))
                    for p in peers:
                        lst = runs.get(p)
                        if lst is None:
                            runs[p] = [[pos, stop, qclass, 1]]
                        else:
                            last = lst[-1]
                            if last[1] == pos and last[2] == qclass:
                                last[1] = stop
                                last[3] += 1
                            else:
                                lst.append([pos, stop, qclass, 1])
                elif typ == PING:
                    assert self.transport is not None
                    self.transport.write(encode(FrameType.PONG, bytes(buf[pos + HEADER_SIZE:stop]),
                                                seq=seq))
                else:
                    parse_header(buf, pos)
                    self._control(FrameType(typ), sess, flags, bytes(buf[pos + HEADER_SIZE:stop]))
                    is_client, is_peer = self.role == "client", self.role == "peer"
                pos = stop
        finally:
            self.start = pos
            if runs:
                relay.send_runs(self.view, runs, self)
            if local:
                relay.deliver_local(buf, local, self)
            if acks and self.transport is not None:
                self.transport.writelines(acks)

    def _control(self, typ: FrameType, sess: int, flags: int, payload: bytes) -> None:
        relay = self.relay
        if not self.role:
            if typ is not FrameType.HELLO:
                raise ProtocolError(f"expected HELLO first, got {typ.name}")
            hello = Frame(FrameType.HELLO, payload=payload).json()
            role = hello.get("role") if isinstance(hello, dict) else None
            if role not in ("client", "peer"):
                raise ProtocolError(f"HELLO: unknown role {role!r}")
            self.role = role
            self.peer_dc = str(hello.get("dc", ""))
            if role == "peer":
                relay.peer_group(self.peer_dc).add(self)
            if role == "client":
                assert self.transport is not None
                self.transport.write(encode_json(FrameType.HELLO, {"role": "relay", "dc": relay.dc}))
            return
        if self.role != "client":
            raise ProtocolError(f"unexpected {typ.name} from a peer relay")
        if typ in (FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.ADVERTISE,
                   FrameType.UNADVERTISE):
            if len(payload) > MAX_TOPIC_BYTES:
                raise ProtocolError(f"topic longer than {MAX_TOPIC_BYTES} bytes")
            try:
                topic = payload.decode()
            except UnicodeDecodeError:
                raise ProtocolError("topic is not UTF-8") from None
            if session_id(topic) != sess:
                raise ProtocolError(f"session id {sess:#x} does not match topic {topic!r}")
            if typ is FrameType.SUBSCRIBE:
                relay.subscribe(self, topic)
            elif typ is FrameType.UNSUBSCRIBE:
                relay.unsubscribe(self, sess)
            elif typ is FrameType.ADVERTISE:
                relay.advertise(self, topic, flags)
            else:
                relay.unadvertise(self, sess, linger=False)
            return
        raise ProtocolError(f"unexpected {typ.name} from a client")


class ReadGroup:
    """Connections whose reading pauses and resumes together (a peer's P connections)."""

    def __init__(self, members: set[Connection] | None = None):
        self.members: set[Connection] = members or set()
        self.blocks = 0

    def add(self, conn: Connection) -> None:
        self.members.add(conn)
        if self.blocks:
            conn.hold_reading()

    def pause(self) -> None:
        for c in self.members:
            c.hold_reading()

    def resume(self) -> None:
        for c in self.members:
            c.release_reading()


class ControlLink(asyncio.Protocol):
    """The connection to the controller: table pushes in."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.table_version = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            for f in self.decoder.receive_data(data):
                if f.type is FrameType.TABLE:
                    table, peers = table_from_json(f.json())
                    if table.version > self.table_version:
                        self.table_version = table.version
                        self.relay.install(table, peers)
                elif f.type is FrameType.ERROR:
                    log.warning("relay %s: controller says: %s", self.relay.dc, f.text())
        except ProtocolError as e:
            log.warning("relay %s: bad frame from the controller: %s", self.relay.dc, e)
            assert self.transport is not None
            self.transport.close()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)


class Relay:
    """One relay: its listening socket, controller link, peer links, sessions, table."""

    def __init__(self, dc: str, listen: str, controller: str, parallel: int = 4,
                 interval_s: float = REPORT_INTERVAL_S, advertise: str | None = None,
                 peers: dict[str, str] | None = None, congestion_control: str | None = None):
        self.dc, self.listen, self.controller_addr = dc, listen, controller
        self.congestion_control = congestion_control
        self.parallel, self.interval_s = parallel, interval_s
        self.address = advertise or ""
        self.static_peers = dict(peers or {})
        self.fwd = Forwarding()
        self.peers: dict[str, PeerLink] = {}
        self.sessions: dict[int, LocalSession] = {}
        self.reorder: dict[tuple[int, int], Reorder] = {}
        self.pending: dict[int, Pending] = {}
        self.transit: dict[int, Pending] = {}
        self.connections: set[Connection] = set()
        self._peer_groups: dict[str, ReadGroup] = {}
        self.counters: Counter[str] = Counter()
        self._known_relays: set[str] = set()
        self._relay_lost_at = -RELAY_LOST_WINDOW_S
        self._current_routes: dict = {}
        self._retired: dict[tuple[int, int], tuple[float, Route]] = {}
        """Routes the controller dropped, kept until the time given: see `_retire_routes`."""
        self.control: ControlLink | None = None
        self._report_soon = False
        self._tasks: list[asyncio.Task] = []
        self.server: asyncio.Server | None = None

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> str:
        host, port = split_address(self.listen)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Connection(self), host, port)
        bound = self.server.sockets[0].getsockname()
        self.address = self.address or f"{bound[0]}:{bound[1]}"
        if self.static_peers:
            self._update_peers(self.static_peers)
        self._tasks = [asyncio.create_task(self._control_loop()),
                       asyncio.create_task(self._timer(HEARTBEAT_INTERVAL_S, self._heartbeat)),
                       asyncio.create_task(self._timer(self.interval_s, self._report)),
                       asyncio.create_task(self._timer(SWEEP_INTERVAL_S, self._sweep))]
        return self.address

    def state(self) -> dict:
        """Where frames wait and what is paused: for `kill -USR1` on a relay that seems stuck."""
        def conn(c: Connection) -> str:
            return f"{c.role}:{c.peer_dc or '-'}#{id(c) % 10000}"
        return {
            "counters": dict(self.counters),
            "table_version": self.fwd.version, "routes": len(self.fwd.routes),
            "retired_routes": len(self._retired),
            "connections": [{"conn": conn(c), "read_holds": c.read_holds,
                             "outbox_bytes": c.outbox.bytes, "write_paused": c.write_paused}
                            for c in self.connections],
            "peer_groups": {dc: g.blocks for dc, g in self._peer_groups.items()},
            "peers": {n: {"outbox_bytes": p.outbox.bytes, "conns": [
                None if c is None or c.transport is None else
                {"write_paused": c.paused, "buffered": c.transport.get_write_buffer_size()}
                for c in p.conns]} for n, p in self.peers.items()},
            "reorder": [{"session": f"{sid:#x}", "origin": origin, "next": st.next,
                         "held": len(st.held), "held_bytes": st.held_bytes,
                         "lowest": min(st.held) if st.held else None, "no_pause": st.no_pause,
                         "paused": {conn(c): r.lowest if (r := st.recent.get(c)) else None
                                    for c in st.paused}}
                        for (sid, origin), st in self.reorder.items() if st.held or st.paused],
            "pending": {f"{k:#x}": p.bytes for k, p in self.pending.items()},
            "transit": {f"{k:#x}": p.bytes for k, p in self.transit.items()},
        }

    async def stop(self) -> None:
        log.info("relay %s: counters at exit %s", self.dc, json.dumps(dict(sorted(self.counters.items()))))
        for t in self._tasks:
            t.cancel()
        for link in self.peers.values():
            link.close()
        if self.server is not None:
            self.server.close()
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        if self.control is not None and self.control.transport is not None:
            self.control.transport.close()

    async def _timer(self, every_s: float, fn) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                fn()
            except Exception:
                log.exception("relay %s: periodic task failed", self.dc)

    async def _control_loop(self) -> None:
        host, port = split_address(self.controller_addr)
        loop = asyncio.get_running_loop()
        while True:
            try:
                _, link = await loop.create_connection(lambda: ControlLink(self), host, port)
            except OSError as e:
                log.warning("relay %s: cannot reach controller %s (%s); retrying in %g s", self.dc,
                            self.controller_addr, e.strerror or e, RECONNECT_S)
                await asyncio.sleep(RECONNECT_S)
                continue
            self.control = link
            link.send(encode_json(FrameType.REGISTER, {"dc": self.dc, "address": self.address}))
            self._report()
            log.info("relay %s: registered with controller %s", self.dc, self.controller_addr)
            await link.lost
            self.control = None
            log.warning("relay %s: controller lost; forwarding with table v%d", self.dc,
                        self.fwd.version)
            await asyncio.sleep(RECONNECT_S)

    def _heartbeat(self) -> None:
        if self.control is not None:
            self.control.send(encode(FrameType.HEARTBEAT))
        for link in self.peers.values():
            link.ping()

    def _report(self, links: bool = True) -> None:
        self._report_soon = False
        if self.control is None:
            return
        body: dict = {"interest": [s.interest() for s in self.sessions.values() if not s.idle]}
        if links:
            body["links"] = [link.report(self.interval_s) for link in self.peers.values()]
            body["counters"] = {**self.counters, "subscriber_dropped": (
                self.counters["subscriber_dropped_closed"]
                + sum(c.outbox.dropped_frames for c in self.connections))}
            body["table_version"] = self.fwd.version
        self.control.send(encode_json(FrameType.REPORT, body))

    def interest_changed(self) -> None:
        if not self._report_soon:
            self._report_soon = True
            asyncio.get_running_loop().call_soon(self._report, False)

    def _sweep(self) -> None:
        now = time.monotonic()
        self._expire_routes(now)
        for held in (self.pending, self.transit):
            for sid, p in list(held.items()):
                before = p.dropped
                p.expire(now)
                self.counters["pending_expired"] += p.dropped - before
                if not p.frames:
                    p.release()
                    del held[sid]
        if len(self.reorder) > REORDER_STATES_MAX:
            self.reorder = {k: st for k, st in self.reorder.items() if st.held or st.paused}
        relay_lost = now - self._relay_lost_at < RELAY_LOST_WINDOW_S
        for (sid, _), st in self.reorder.items():
            if not st.held:
                continue
            if st.reliable and not relay_lost and self._subscribers_behind(sid):
                # The subscriber is the bottleneck, and the missing frames may be queued behind
                # the backpressure it causes: the gap's clock runs only while it keeps up.
                st.since = now
                continue
            if st.stalled(now):
                self.counters["reorder_pause_stalled"] += 1
            timeout_s = REORDER_TIMEOUT_S if relay_lost else st.timeout_s
            if now - st.since > timeout_s:
                out: list = []
                before = st.skipped
                st.expire(out, now, timeout_s)
                self._gave_up(sid, st, before,
                              "a relay left" if relay_lost else f"a gap outlived {timeout_s} s")
                self._to_subscribers(sid, out, None)

    # -- table -------------------------------------------------------------------------------------

    def install(self, table, peers: dict[str, str]) -> None:
        try:
            fwd = compile_table(table)
        except ValueError as e:
            log.warning("relay %s: rejected table v%d: %s", self.dc, table.version, e)
            return
        self._retire_routes(fwd, table.version, time.monotonic())
        self.fwd = fwd
        if self._known_relays - set(peers):
            # a relay left the overlay: frames it held are gone, so gaps are losses now
            self._relay_lost_at = time.monotonic()
        self._known_relays = set(peers)
        self._update_peers({**self.static_peers, **peers})
        log.info("relay %s: table v%d, %d entries, next hops %s", self.dc, fwd.version,
                 len(fwd.routes), sorted(fwd.next_hops))
        for sid in [s for s in self.pending if s in fwd.ingress]:
            self._release_pending(sid)
        for sid in list(self.transit):
            self._release_transit(sid)

    def _retire_routes(self, fwd: Forwarding, version: int, now: float) -> None:
        """Keep the routes the new table drops for RETIRED_ROUTE_KEEP_S, so frames already sent
        on them finish them; the controller names no other route by their ids meanwhile.

        A relay that missed a table (it was cut off, or the controller restarted) cannot know
        what its old ids mean now, and keeps nothing."""
        current = self._current_routes
        if version == self.fwd.version + 1:
            until = now + RETIRED_ROUTE_KEEP_S
            for key, route in current.items():
                if key not in fwd.routes:
                    self._retired[key] = (until, route)
        else:
            self._retired.clear()
        for key in fwd.routes:
            self._retired.pop(key, None)
        self._current_routes = dict(fwd.routes)
        fwd.routes = self._merged_routes()

    def _expire_routes(self, now: float) -> None:
        expired = [k for k, (until, _) in self._retired.items() if until <= now]
        if expired:
            for key in expired:
                del self._retired[key]
            self.fwd.routes = self._merged_routes()

    def _merged_routes(self) -> dict:
        """The current table's routes over the retired ones still kept."""
        return {**{k: r for k, (_, r) in self._retired.items()}, **self._current_routes}

    def _update_peers(self, peers: dict[str, str]) -> None:
        for name in [n for n in self.peers if n not in peers]:
            log.info("relay %s: dropping peer %s", self.dc, name)
            link = self.peers.pop(name)
            before = link.outbox.dropped_frames
            link.close()
            self.counters["dropped_peer_gone"] += link.outbox.dropped_frames - before
        for name, addr in peers.items():
            if name == self.dc:
                continue
            link = self.peers.get(name)
            if link is not None and link.address != addr:
                link.close()
                link = None
            if link is None:
                link = self.peers[name] = PeerLink(self.dc, name, addr, self.parallel,
                                                             self.congestion_control)
                link.on_first_rtt = self._report
                link.start()

    def peer_group(self, dc: str) -> ReadGroup:
        group = self._peer_groups.get(dc)
        if group is None:
            group = self._peer_groups[dc] = ReadGroup()
        return group

    def hold(self, sid: int, frame: bytearray, qclass: int, source: Connection | None,
             transit: bool = False) -> None:
        """Keep a frame that has no route yet: from a local publisher (ingress) or a peer
        whose table arrived before ours (transit)."""
        held = self.transit if transit else self.pending
        p = held.get(sid)
        if p is None:
            p = held[sid] = Pending()
        p.add(time.monotonic(), frame, qclass, frame[2] & Flag.RELIABLE, source)

    def _release_pending(self, sid: int) -> None:
        p = self.pending.pop(sid)
        picker = self.fwd.ingress[sid]
        touched: set[PeerLink] = set()
        for _, frame, qclass in p.drain():
            route = picker.pick(len(frame))
            frame[3] = route
            r = self.fwd.routes.get((sid, route))
            if r is None:
                self.counters["no_route"] += 1
                continue
            for name in r.resolve(len(frame))[0]:
                link = self.peers.get(name)
                if link is not None:
                    link.outbox.push(bytes(frame), 1, qclass)
                    touched.add(link)
        for link in touched:
            link.flush()
        p.release()

    def _release_transit(self, sid: int) -> None:
        p = self.transit[sid]
        kept = Pending()
        touched: set[PeerLink] = set()
        for t, frame, qclass in p.drain():
            r = self.fwd.routes.get((sid, frame[3]))
            if r is None:
                kept.frames.append((t, frame, qclass))
                kept.bytes += len(frame)
                continue
            peers, here = r.resolve(len(frame))
            for name in peers:
                link = self.peers.get(name)
                if link is not None:
                    link.outbox.push(bytes(frame), 1, qclass)
                    touched.add(link)
            if here:
                _, _, _, _, _, origin, seq, _ = HEADER.unpack_from(frame, 0)
                self.deliver_local(frame, [(sid, origin, seq, 0, len(frame), qclass)], None)
        for link in touched:
            link.flush()
        if kept.frames:
            kept.blocked = p.blocked
            self.transit[sid] = kept
        else:
            p.release()
            del self.transit[sid]

    # -- forwarding --------------------------------------------------------------------------------

    def send_runs(self, view: memoryview, runs: dict[str, list[list[int]]], source: Connection) -> None:
        for name, lst in runs.items():
            link = self.peers.get(name)
            if link is None:
                self.counters["no_peer"] += sum(x[3] for x in lst)
                continue
            for a, b, qclass, n in lst:
                link.send(view[a:b], n, qclass, source)

    def deliver_local(self, buf: bytearray, items: list[tuple[int, int, int, int, int, int]],
                      source: Connection | None) -> None:
        """Frames for this relay's subscribers, in sequence order per (session, publisher)."""
        out: dict[int, list] = {}
        classes: dict[int, int] = {}
        sessions, reorder = self.sessions, self.reorder
        now = 0.0
        for sid, origin, seq, a, b, qclass in items:
            s = sessions.get(sid)
            if s is None or not s.subscribers:
                self.counters["no_subscriber"] += 1
                continue
            st = reorder.get((sid, origin))
            if st is None:
                st = reorder[(sid, origin)] = Reorder(seq, qclass in RELIABLE_CLASSES)
            lst = out.get(sid)
            if lst is None:
                lst = out[sid] = []
                classes[sid] = qclass
            if st.paused and source not in st.paused:
                st.free_arrival = now = now or time.monotonic()
            if source is not None and (st.held or seq > st.next):
                st.saw(source, seq)
            if seq == st.next:
                st.next = seq + 1
                last = lst[-1] if lst else None
                if type(last) is list and last[1] == a:
                    last[1] = b
                    last[2] += 1
                else:
                    lst.append([a, b, 1])
                if st.held:
                    st.release(lst)
                    if st.held:  # a later gap is open from now on
                        st.since = now = now or time.monotonic()
                    st.moved()
            elif seq > st.next:
                self.counters["held_out_of_order"] += 1
                now = now or time.monotonic()
                st.hold(seq, bytes(buf[a:b]), now)
                if st.overfull:
                    paused = len(st.paused)
                    if st.overflow(source, seq, now):
                        self.counters["reorder_paused"] += len(st.paused) - paused
                    else:
                        before = st.skipped
                        st.skip(lst, now)
                        self.counters["reorder_overflows"] += 1
                        self._gave_up(sid, st, before, f"{st.held_bytes} bytes held")
            else:
                st.late += 1
                self.counters["late_frames"] += 1
        view = memoryview(buf)
        for sid, lst in out.items():
            chunks = [(view[x[0]:x[1]], x[2]) if type(x) is list else (x, 1) for x in lst]
            self._push_subscribers(sid, chunks, classes[sid], source)

    def _gave_up(self, sid: int, st: Reorder, before: int, why: str) -> None:
        """Count the frames a skipped gap cost; a reliable session's loss is worth a warning."""
        self.counters["reorder_skipped"] += st.skipped - before
        if st.reliable:
            log.warning("relay %s: session %#x gave up %d frames of a reliable stream (%s)",
                        self.dc, sid, st.skipped - before, why)

    def _subscribers_behind(self, sid: int) -> bool:
        s = self.sessions.get(sid)
        return s is not None and any(c.outbox or c.write_paused for c in s.subscribers)

    def _to_subscribers(self, sid: int, frames: list[bytes], source: Connection | None) -> None:
        if frames:
            flags = frames[0][2]
            self._push_subscribers(sid, [(f, 1) for f in frames], queue_class(flags), source)

    def _push_subscribers(self, sid: int, chunks: list[tuple[bytes | memoryview, int]], qclass: int,
                          source: Connection | None) -> None:
        """Hand frames to every local subscriber (`memoryview`s into a receive buffer are written
        at once or copied: they must not outlive this call)."""
        s = self.sessions.get(sid)
        if s is None:
            return
        if len(s.subscribers) > 1:
            chunks = [(bytes(c) if type(c) is memoryview else c, n) for c, n in chunks]
        for sub in s.subscribers:
            for data, n in chunks:
                sub.send(data, n, qclass, source)

    # -- local sessions ------------------------------------------------------------------------------

    def _session(self, topic: str) -> LocalSession:
        sid = session_id(topic)
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = LocalSession(topic, sid)
        return s

    def subscribe(self, conn: Connection, topic: str) -> None:
        s = self._session(topic)
        if conn not in s.subscribers:
            s.subscribers.append(conn)
            conn.subscribed.add(s.sid)
            self.interest_changed()

    def unsubscribe(self, conn: Connection, sid: int) -> None:
        s = self.sessions.get(sid)
        conn.subscribed.discard(sid)
        if s is not None and conn in s.subscribers:
            s.subscribers.remove(conn)
            self._forget_if_idle(s)
            self.interest_changed()

    def advertise(self, conn: Connection, topic: str, flags: int) -> None:
        s = self._session(topic)
        if s.sid not in conn.advertised:
            conn.advertised[s.sid] = (topic, flags)
            s.publishers += 1
            s.delay_sensitive = s.delay_sensitive or bool(flags & Flag.DELAY_SENSITIVE)
            self.interest_changed()

    def unadvertise(self, conn: Connection, sid: int, linger: bool) -> None:
        if conn.advertised.pop(sid, None) is None:
            return
        if linger:
            asyncio.get_running_loop().call_later(PUBLISHER_LINGER_S, self._publisher_gone, sid)
        else:
            self._publisher_gone(sid)

    def _publisher_gone(self, sid: int) -> None:
        s = self.sessions.get(sid)
        if s is not None and s.publishers:
            s.publishers -= 1
            self._forget_if_idle(s)
            self.interest_changed()

    def _forget_if_idle(self, s: LocalSession) -> None:
        if s.idle:
            del self.sessions[s.sid]
            for key in [k for k in self.reorder if k[0] == s.sid]:
                self.reorder.pop(key).resume()


async def run_relay(relay: Relay, ready: asyncio.Future | None = None) -> None:
    """Start the relay and serve until cancelled; SIGUSR1 logs its state (`Relay.state`)."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1, lambda: log.warning("relay %s: state %s", relay.dc,
                                                json.dumps(relay.state(), default=str)))
    address = await relay.start()
    print(f"relay {relay.dc} listening on {address}", flush=True)
    try:
        await asyncio.Future()
    finally:
        with contextlib.suppress(Exception):
            await relay.stop()
