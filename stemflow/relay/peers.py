"""Links to peer relays: P persistent outgoing TCP connections each, shared by all sessions.

Owns dialing and re-dialing the P connections to one peer, striping queued frames over them
(round robin over the connections whose write buffers have room), pinging for RTT, and the
per-link measurements a report carries. Connections are one-way for data: this relay sends on
the connections it dialed and receives on the ones its peers dialed (server.py). What to send
is decided by the server and the forwarding table; the queueing discipline is the outbox's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from stemflow.protocol import FrameDecoder, FrameType, ProtocolError, encode, encode_json, split_address
from stemflow.relay.measure import Delta, RttSamples, tcp_info
from stemflow.relay.outbox import DS_RELIABLE, WRITE_BATCH_BYTES, Outbox
from stemflow.relay.sockets import (
    FAST_NOTSENT_LOWAT_BYTES,
    PEER_NOTSENT_LOWAT_BYTES,
    keeps_view,
    tune_socket,
)

log = logging.getLogger("stemflow.relay")

RECONNECT_S = 0.25
"""Delay between attempts to (re)connect to a peer: short, loopback and datacenters alike
answer in well under this, and a returning relay should be used again quickly."""
CONNECT_TIMEOUT_S = 2.0
STRIPE_BYTES = WRITE_BATCH_BYTES
"""Consecutive bytes sent on one connection before moving to the next: the receiving relay
reads about this much per connection per loop turn, so stripes of this size mostly arrive in
order, and small frames are not scattered over every connection."""
TRANSPORT_HIGH_BYTES = WRITE_BATCH_BYTES
"""Bytes asyncio may hold for one connection beyond the kernel: kept at one batch so that
prioritization happens in our outbox, not in a FIFO we do not control."""
TRANSPORT_LOW_BYTES = WRITE_BATCH_BYTES // 4
FAST_TRANSPORT_HIGH_BYTES = FAST_NOTSENT_LOWAT_BYTES
"""What asyncio may hold for the fast connection: as little as the kernel may (see
`FAST_NOTSENT_LOWAT_BYTES`); delay-sensitive frames queue in our outbox, by age, instead."""


class PeerConnection(asyncio.Protocol):
    """One outgoing connection of a peer link; it only ever receives PONG (or ERROR)."""

    def __init__(self, link: PeerLink, index: int):
        self.link, self.index = link, index
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.decoder = FrameDecoder()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        fast = self.index == self.link.parallel
        high = FAST_TRANSPORT_HIGH_BYTES if fast else TRANSPORT_HIGH_BYTES
        transport.set_write_buffer_limits(high, high // 4)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, self.link.congestion_control,
                        FAST_NOTSENT_LOWAT_BYTES if fast else PEER_NOTSENT_LOWAT_BYTES)
        transport.write(encode_json(FrameType.HELLO, {"role": "peer", "dc": self.link.local_dc,
                                                      "index": self.index})
                        + encode(FrameType.PING, time.monotonic_ns().to_bytes(8, "big")))

    def data_received(self, data: bytes) -> None:
        try:
            for f in self.decoder.receive_data(data):
                if f.type is FrameType.PONG and len(f.payload) == 8:
                    sent_ns = int.from_bytes(f.payload, "big")
                    first = self.link.rtt.median_ms() is None
                    self.link.rtt.add((time.monotonic_ns() - sent_ns) / 1e6)
                    if first and self.link.on_first_rtt is not None:
                        self.link.on_first_rtt()  # a new link: tell the controller now, not in 1 s
                elif f.type is FrameType.CREDIT:
                    self.link.on_credit(f.session, f.route, f.seq)
                elif f.type is FrameType.ERROR:
                    log.warning("peer %s refused connection %d: %s", self.link.name, self.index, f.text())
        except ProtocolError as e:
            log.warning("peer %s connection %d: %s", self.link.name, self.index, e)
            assert self.transport is not None
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.link.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def writable(self) -> bool:
        return self.transport is not None and not self.paused

    def write(self, chunks: list[bytes] | list[memoryview | bytes]) -> None:
        assert self.transport is not None
        if not chunks:  # the outbox dropped what waited (live frames past their deadline)
            return
        n = sum(len(c) for c in chunks)
        self.link.bytes_sent += n
        self.link.conn_bytes[self.index] += n
        if len(chunks) > 1:
            self.transport.writelines(chunks)
        else:
            self.transport.write(chunks[0])


class PeerLink:
    """Everything this relay sends to one peer relay: P bulk connections striped, and one fast
    connection for delay-sensitive frames alone.

    The fast connection is why a live frame never waits behind bulk bytes in a kernel or in
    asyncio: on a shared connection it would queue behind the unsent bulk bytes there (up to
    PEER_NOTSENT_LOWAT_BYTES plus a transport batch: 30 ms at 100 Mbit/s) and behind bulk
    retransmissions; on its own it waits only for other delay-sensitive frames, a few KiB."""

    def __init__(self, local_dc: str, name: str, address: str, parallel: int,
                 congestion_control: str | None = None, tls: ssl.SSLContext | None = None):
        self.local_dc, self.name, self.address, self.parallel = local_dc, name, address, parallel
        self.congestion_control = congestion_control
        self.tls = tls  # our certificate shown, the peer's checked as relay `name`
        self.outbox = Outbox()
        self.fast_outbox = Outbox()
        self.conns: list[PeerConnection | None] = [None] * (parallel + 1)  # the last: fast
        self.rtt = RttSamples()
        self.on_first_rtt: Callable[[], None] | None = None
        self.on_credit: Callable[[int, int, int], None] = lambda sid, route, n: None
        self.on_reset: Callable[[], None] = lambda: None
        self.bytes_sent = 0
        self.conn_bytes = [0] * (parallel + 1)
        self._rr = 0
        self._stripe_left = 0
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._acked, self._retrans, self._segs, self._sent = Delta(), Delta(), Delta(), Delta()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(i)) for i in range(self.parallel + 1)]

    def close(self) -> None:
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for c in self.conns:
            if c is not None and c.transport is not None:
                c.transport.close()
        self.outbox.discard()
        self.fast_outbox.discard()

    async def _keep(self, i: int) -> None:
        host, port = split_address(self.address)
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: PeerConnection(self, i), host, port, ssl=self.tls,
                                           server_hostname=self.name if self.tls else None),
                    CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError):
                await asyncio.sleep(RECONNECT_S)
                continue
            self.conns[i] = conn
            log.info("peer %s: connection %d up", self.name, i)
            self.flush()
            await conn.lost
            self.conns[i] = None
            if not self._closed:
                log.info("peer %s: connection %d lost", self.name, i)
                self.on_reset()  # what it carried is gone: credit starts afresh on both ends
                await asyncio.sleep(RECONNECT_S)

    @property
    def connected(self) -> int:
        return sum(1 for c in self.conns if c is not None and c.transport is not None)

    @property
    def dropped_frames(self) -> int:
        return self.outbox.dropped_frames + self.fast_outbox.dropped_frames

    def _connection(self, size: int) -> PeerConnection | None:
        """The connection for the next `size` bytes: the current stripe's while it has room and
        the stripe is not full, else the next writable one (round robin)."""
        conns, n = self.conns, self.parallel
        c = conns[self._rr]
        if self._stripe_left > 0 and c is not None and c.writable:
            self._stripe_left -= size
            return c
        for k in range(1, n + 1):
            i = (self._rr + k) % n
            c = conns[i]
            if c is not None and c.writable:
                self._rr, self._stripe_left = i, STRIPE_BYTES - size
                return c
        return None

    def send(self, data: memoryview | bytes, nframes: int, qclass: int, source=None) -> None:
        """Write a run of frames at once when nothing waits and a connection has room (no copy:
        the transport keeps only what the socket did not take), else queue a copy. Reliable
        frames come on credit, so what queues here is bounded without pausing anyone."""
        fast = qclass <= DS_RELIABLE
        ob = self.fast_outbox if fast else self.outbox
        if not ob:
            c = self._fast() if fast else self._connection(len(data))
            if c is not None:
                c.write([data])
                if source is not None and c.transport is not None and keeps_view(c.transport, data):
                    source.rb.lent = True
                return
        ob.push(bytes(data), nframes, qclass)
        self.flush()

    def _fast(self) -> PeerConnection | None:
        c = self.conns[self.parallel]
        return c if c is not None and c.writable else None

    def flush(self) -> None:
        """Move queued chunks onto connections with room: delay-sensitive ones to the fast
        connection, the rest stripe by stripe."""
        ob = self.fast_outbox
        while ob:
            c = self._fast()
            if c is None:
                break
            c.write(ob.pull())
        ob = self.outbox
        while ob:
            c = self._connection(0)
            if c is None:
                return
            chunks = ob.pull()
            self._stripe_left -= sum(len(x) for x in chunks)
            c.write(chunks)

    def ping(self) -> None:
        payload = time.monotonic_ns().to_bytes(8, "big")
        for c in self.conns:
            if c is not None and c.transport is not None:
                c.transport.write(encode(FrameType.PING, payload))

    def report(self, interval_s: float) -> dict:
        """This interval's measurements of the link (and lifetime counters)."""
        infos = [tcp_info(c.transport.get_extra_info("socket")) for c in self.conns
                 if c is not None and c.transport is not None]
        infos = [i for i in infos if i is not None]
        sent = self.bytes_sent
        d_sent = self._sent.step(sent)
        fast = self.conns[self.parallel]
        out: dict = {"peer": self.name,
                     "connections": self.connected - (fast is not None and fast.transport is not None),
                     "rtt_ms": self.rtt.median_ms(), "bytes_sent": sent,
                     "sent_mbps": d_sent * 8 / 1e6 / interval_s,
                     "conn_bytes": self.conn_bytes[:self.parallel],
                     "fast_bytes": self.conn_bytes[self.parallel],
                     "queued_bytes": self.outbox.bytes + self.fast_outbox.bytes,
                     "dropped_frames": self.dropped_frames}
        if infos:
            d_acked = self._acked.step(sum(i.bytes_acked for i in infos))
            d_retrans = self._retrans.step(sum(i.total_retrans for i in infos))
            d_segs = self._segs.step(sum(i.segs_out for i in infos))
            mins = [i.min_rtt_us for i in infos if i.min_rtt_us]
            if mins:
                out["min_rtt_ms"] = min(mins) / 1000
            out.update(tcp_rtt_ms=sum(i.rtt_us for i in infos) / len(infos) / 1000,
                       delivered_mbps=d_acked * 8 / 1e6 / interval_s,
                       retransmits=d_retrans, loss=d_retrans / d_segs if d_segs else 0.0)
        return out
