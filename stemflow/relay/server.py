"""The relay process: the asyncio shell around the sans-IO `RelayCore`.

Owns the sockets, the clock and the queues: one listening port for clients and peer relays
(`Connection`, a `BufferedProtocol` over a `ReceiveBuffer`), the control connection to the
controller (`ControlLink`), the peer links (`peers.py`) and their outboxes (`outbox.py`), and the
timers. Every decision — what a frame is, where it goes, what waits, what to stop reading, what
the controller hears — is the core's (`core.py`); this module feeds it bytes, tables and the
time, and carries out the actions it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
import tracemalloc
from time import monotonic

from stemflow.protocol import (
    FrameDecoder,
    FrameType,
    ProtocolError,
    ReceiveBuffer,
    encode,
    encode_json,
    split_address,
    table_from_json,
)
from stemflow.relay.core import (
    Action,
    Close,
    Conn,
    Deliver,
    InterestChanged,
    PauseReading,
    PeersChanged,
    RelayCore,
    Reply,
    ResumeReading,
    SendFrames,
    SendRuns,
)
from stemflow.relay.history import HistoryPolicy
from stemflow.relay.outbox import Outbox
from stemflow.relay.peers import RECONNECT_S, TRANSPORT_HIGH_BYTES, TRANSPORT_LOW_BYTES, PeerLink
from stemflow.relay.slow import SlowSubscriberPolicy
from stemflow.relay.sockets import keeps_view, tune_socket
from stemflow.security.certs import CONTROLLER_NAME, identity
from stemflow.security.limits import ConnectionLimits
from stemflow.security.permissions import Authenticator
from stemflow.security.tls import MemberTls

log = logging.getLogger("stemflow.relay")

REPORT_INTERVAL_S = 1.0
"""Measurements and interest go to the controller this often (the issue's default)."""
HEARTBEAT_INTERVAL_S = 0.25
"""Heartbeats between reports, so the controller can declare a relay dead well within 2 s."""
SWEEP_INTERVAL_S = 0.05
"""Timer for reorder gaps and expired held frames; a sixth of a live session's REORDER_TIMEOUT_S."""


class Connection(asyncio.BufferedProtocol):
    """One accepted connection: its receive buffer, its outbox (to a client), its transport."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.conn: Conn = relay.core.connection(self)
        self.transport: asyncio.Transport | None = None
        self.rb = ReceiveBuffer()
        self.write_paused = False
        self.outbox = Outbox()
        self.backlog_reported = False
        self.hello_timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.set_write_buffer_limits(TRANSPORT_HIGH_BYTES, TRANSPORT_LOW_BYTES)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, self.relay.congestion_control)
        if self.relay.admit(self):
            self.relay.connections.add(self)
            self.conn.identity = identity(transport.get_extra_info("peercert"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.rb.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        rb = self.rb
        rb.end += nbytes  # ReceiveBuffer.updated, inlined: this runs once per read
        relay = self.relay
        try:
            relay.carry(relay.core.receive(self.conn, rb, monotonic()))
        except Exception:  # a bug must cost one connection, never the relay
            log.exception("relay %s: error on a %s connection", relay.dc, self.conn.role or "new")
            self.fail("internal error")
        if rb.lent or rb.start == rb.end:
            rb.consumed()

    def eof_received(self) -> bool:
        if len(self.rb):
            self.relay.core.count("closed_mid_frame")
            log.info("relay %s: %s connection closed mid-frame (%d bytes)", self.relay.dc,
                     self.conn.role or "new", len(self.rb))
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.backlog_reported:  # a backlogged subscriber is reading: not a dead consumer
            self.relay.core.subscriber_progress(self.conn, monotonic())
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        relay = self.relay
        relay.connections.discard(self)
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        self.transport = None
        self.outbox.discard()
        relay.core.count("subscriber_dropped_closed", self.outbox.dropped_frames)
        relay.carry(relay.core.connection_lost(self.conn, time.monotonic()))

    # -- the outbox's producer protocol (a full queue this connection fed) -------------------------

    def block(self) -> None:
        self.relay.carry(self.relay.core.block(self.conn))

    def unblock(self) -> None:
        self.relay.carry(self.relay.core.unblock(self.conn))

    # -- output ----------------------------------------------------------------------------------

    def send(self, data: bytes | memoryview, nframes: int, qclass: int, source: Connection | None) -> None:
        """Write at once when nothing waits (no copy: the transport takes what the socket does
        not), else queue a copy behind the waiting frames."""
        t = self.transport
        if t is None:
            return
        if not self.outbox and not self.write_paused:
            t.write(data)
            if source is not None and keeps_view(t, data):
                source.rb.lent = True
        else:
            # A publishing client on this relay is paused by a full queue it feeds; a peer is
            # never paused: the core holds back that session's credit instead (`backlog`).
            producer = source if source is not None and source.conn.role == "client" else None
            ob = self.outbox
            ob.push(bytes(data), nframes, qclass, producer)
            if ob.bytes > ob.high and not self.backlog_reported:
                self._backlog(True)
            self.flush()

    def flush(self) -> None:
        ob, t = self.outbox, self.transport
        if t is None:
            return
        while ob and not self.write_paused:
            chunks = ob.pull()  # empty if what waited was live and too old
            if len(chunks) > 1:
                t.writelines(chunks)
            elif chunks:
                t.write(chunks[0])
        if self.backlog_reported and ob.bytes <= ob.low:
            self._backlog(False)

    def _backlog(self, on: bool) -> None:
        """This subscriber's queue passed its high water mark, or drained below its low one."""
        self.backlog_reported = on
        self.relay.carry(self.relay.core.subscriber_backlogged(self.conn, on, monotonic()))

    def set_reading(self, on: bool) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            if on:
                t.resume_reading()
            else:
                t.pause_reading()

    def fail(self, reason: str, abort: bool = False) -> None:
        log.warning("relay %s: closing %s connection: %s", self.relay.dc, self.conn.role or "new",
                    reason)
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(encode(FrameType.ERROR, reason.encode()[:1024]))
            if abort and t.get_write_buffer_size():
                self.outbox.discard()
                t.abort()  # its backlog would go first, to a reader that does not read
            else:
                t.close()
        self.rb.clear()

    @property
    def backlogged(self) -> bool:
        return bool(self.outbox) or self.write_paused


class ControlLink(asyncio.Protocol):
    """The connection to the controller: table pushes in."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.relay.core.controller_connected()

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        try:
            for f in self.decoder.receive_data(data):
                if f.type is FrameType.TABLE:
                    table, peers = table_from_json(f.json())
                    relay.carry(relay.core.install(table, peers, time.monotonic()))
                elif f.type is FrameType.ERROR:
                    log.warning("relay %s: controller says: %s", relay.dc, f.text())
        except ProtocolError as e:
            log.warning("relay %s: bad frame from the controller: %s", relay.dc, e)
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
    """One relay process: the core, its listening socket, controller link, peer links, timers."""

    def __init__(self, dc: str, listen: str, controller: str, parallel: int = 4,
                 interval_s: float = REPORT_INTERVAL_S, advertise: str | None = None,
                 peers: dict[str, str] | None = None, congestion_control: str | None = None,
                 slow: SlowSubscriberPolicy | None = None,
                 limits: ConnectionLimits | None = None, auth: Authenticator | None = None,
                 tls: MemberTls | None = None, history: HistoryPolicy | None = None,
                 acks: bool = True):
        self.dc, self.listen, self.controller_addr = dc, listen, controller
        self.limits = limits or ConnectionLimits()
        self.congestion_control = congestion_control
        self.parallel, self.interval_s = parallel, interval_s
        self.address = advertise or ""
        self.tls = tls
        """This relay's certificate (`stemflow.security.tls`): TLS on every connection, peers and
        the controller checked as overlay members. None: plain TCP."""
        self.core = RelayCore(dc, peers, slow, auth,
                              members_only=tls is not None or auth is not None, history=history,
                              acks=acks)
        self.peers: dict[str, PeerLink] = {}
        self.connections: set[Connection] = set()
        self.control: ControlLink | None = None
        self._report_soon = False
        self._tasks: list[asyncio.Task] = []
        self.server: asyncio.Server | None = None

    @property
    def counters(self):
        return self.core.counters

    # -- carrying out the core's actions -----------------------------------------------------------

    def carry(self, actions: list[Action]) -> None:
        """Do what the core decided, in its order."""
        for a in actions:
            kind = type(a)
            if kind is SendRuns:
                view, src = a.view, a.source.io if a.source is not None else None
                peers = self.peers
                for name, lst in a.runs.items():
                    link = peers[name]
                    for x0, x1, qclass, n in lst:
                        link.send(view[x0:x1], n, qclass, src)
            elif kind is Deliver:
                src = a.source.io if a.source is not None else None
                qclass, chunks = a.qclass, a.chunks
                for sub in a.subscribers:
                    io = sub.io
                    for data, n in chunks:
                        io.send(data, n, qclass, src)
            elif kind is Reply:
                t = a.conn.io.transport
                if t is not None and not t.is_closing():
                    t.write(a.data)
            elif kind is SendFrames:
                link = self.peers[a.peer]
                frames = a.frames
                if len(frames) == 1:
                    link.send(frames[0][0], 1, frames[0][1])
                    continue
                # Frames that waited for credit leave together: one write per queue class run.
                i = 0
                while i < len(frames):
                    qclass, j = frames[i][1], i + 1
                    while j < len(frames) and frames[j][1] == qclass:
                        j += 1
                    link.send(b"".join(f for f, _ in frames[i:j]), j - i, qclass)
                    i = j
            elif kind is PauseReading:
                a.conn.io.set_reading(False)
            elif kind is ResumeReading:
                a.conn.io.set_reading(True)
            elif kind is Close:
                a.conn.io.fail(a.reason, a.abort)
            elif kind is PeersChanged:
                self._update_peers(a.peers)
            elif kind is InterestChanged:
                self._interest_changed()

    # -- admission (stemflow.security.limits decides; counted here) -------------------------------

    def admit(self, c: Connection) -> bool:
        """Refuse a connection over the cap; give an admitted one its HELLO deadline."""
        refusal = self.limits.refusal(len(self.connections))
        if refusal is not None:
            self.core.count("refused_connection_cap")
            c.fail(refusal)
            return False
        c.hello_timer = asyncio.get_running_loop().call_later(self.limits.hello_timeout_s,
                                                              self._hello_due, c)
        return True

    def _hello_due(self, c: Connection) -> None:
        c.hello_timer = None
        if not c.conn.role and c.transport is not None:
            self.core.count("hello_timeouts")
            c.fail(f"no HELLO within {self.limits.hello_timeout_s:g} s")

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> str:
        host, port = split_address(self.listen)
        loop = asyncio.get_running_loop()
        tls = {"ssl": self.tls.server, "ssl_handshake_timeout": self.limits.hello_timeout_s} \
            if self.tls else {}  # a handshake that never ends holds a connection as a silent one does
        self.server = await loop.create_server(lambda: Connection(self), host, port, **tls)
        bound = self.server.sockets[0].getsockname()
        self.address = self.address or f"{bound[0]}:{bound[1]}"
        if self.core.static_peers:
            self._update_peers(self.core.static_peers)
        self._tasks = [asyncio.create_task(self._control_loop()),
                       asyncio.create_task(self._timer(HEARTBEAT_INTERVAL_S, self._heartbeat)),
                       asyncio.create_task(self._timer(self.interval_s, self._report)),
                       asyncio.create_task(self._timer(SWEEP_INTERVAL_S, self._sweep))]
        return self.address

    def state(self) -> dict:
        """Where frames wait and what is paused: for `kill -USR1` on a relay that seems stuck."""
        st = self.core.state()
        st["connections"] = [{"conn": f"{c.conn.role}:{c.conn.peer_dc or '-'}#{id(c.conn) % 10000}",
                              "read_holds": c.conn.read_holds, "outbox_bytes": c.outbox.bytes,
                              "write_paused": c.write_paused} for c in self.connections]
        st["peers"] = {n: {"outbox_bytes": p.outbox.bytes, "conns": [
            None if c is None or c.transport is None else
            {"write_paused": c.paused, "buffered": c.transport.get_write_buffer_size()}
            for c in p.conns]} for n, p in self.peers.items()}
        st["gc_objects"] = len(gc.get_objects())  # what grows if something is never let go
        if tracemalloc.is_tracing():  # started with PYTHONTRACEMALLOC=N: where memory went
            st["top_allocations"] = [f"{s.traceback[0]}: {s.size / 1024:.0f} KiB in {s.count}"
                                     for s in tracemalloc.take_snapshot().statistics("lineno")[:15]]
        return st

    async def stop(self) -> None:
        log.info("relay %s: counters at exit %s", self.dc,
                 json.dumps(dict(sorted(self.core.counters.items()))))
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
                _, link = await loop.create_connection(
                    lambda: ControlLink(self), host, port, ssl=self.tls.client if self.tls else None,
                    server_hostname=CONTROLLER_NAME if self.tls else None)
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
                        self.core.fwd.version)
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
        if links:
            for name, link in self.peers.items():
                self.core.link_rtt(name, link.rtt.median_ms())
        body = self.core.report([link.report(self.interval_s) for link in self.peers.values()]
                                if links else None)
        if links:
            body["counters"]["subscriber_dropped"] = (
                self.core.counters["subscriber_dropped_closed"]
                + sum(c.outbox.dropped_frames for c in self.connections))
        self.control.send(encode_json(FrameType.REPORT, body))

    def _interest_changed(self) -> None:
        if not self._report_soon:
            self._report_soon = True
            asyncio.get_running_loop().call_soon(self._report, False)

    def _sweep(self) -> None:
        self.carry(self.core.tick(time.monotonic(),
                                  [c.conn for c in self.connections if c.backlogged]))

    def _update_peers(self, peers: dict[str, str]) -> None:
        for name in [n for n in self.peers if n not in peers]:
            log.info("relay %s: dropping peer %s", self.dc, name)
            link = self.peers.pop(name)
            before = link.dropped_frames
            link.close()
            self.core.count("dropped_peer_gone", link.dropped_frames - before)
        for name, addr in peers.items():
            link = self.peers.get(name)
            if link is not None and link.address != addr:
                link.close()
                link = None
            if link is None:
                link = self.peers[name] = PeerLink(self.dc, name, addr, self.parallel,
                                                   self.congestion_control,
                                                   self.tls.client if self.tls else None)
                link.on_first_rtt = self._report
                link.on_credit = self._credit_from(name)
                link.on_reset = self._reset_from(name)
                link.start()

    def _credit_from(self, peer: str):
        core = self.core
        return lambda sid, route, n: self.carry(core.credit(peer, sid, route, n))

    def _reset_from(self, peer: str):
        return lambda: self.carry(self.core.peer_reset(peer))


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
