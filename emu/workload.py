"""The workload endpoints of an emulated run: one publisher or subscriber of one session.

Owns sending a session's messages (what they are is its workload kind's schedule,
`stemflow.workloads`) and measuring them at the far end, the same way over two transports so
that the two are comparable:

- `direct`: plain TCP from the publisher's host to each subscriber's host over the Internet path
  (the baseline); messages are length-prefixed; the scenario's congestion control is set on
  every socket (TCP_CONGESTION); the window cap is the topology's (a locked route cwnd);
- `stemflow`: `stemflow.client` connected to the relay of the client's datacenter.

Every message starts with a header (`stemflow.emu.messages`: sequence number, publish time on
CLOCK_MONOTONIC), so a subscriber measures one-way delay and order by itself.
A request-response session's subscriber answers each message, and the publisher measures the
round trip. Each process prints READY when it can receive, then one JSON report. Which process
runs where, and turning reports into result rows, is `stemflow.emu.run`'s job.

    python -m stemflow.emu.workload sub --session-json J --name CLIENT (--listen A:P | --relay A:P)
    python -m stemflow.emu.workload pub --session-json J --name CLIENT (--to A:P,... | --relay A:P)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter
from stemflow.emu.messages import HEADER, Message, encode

from stemflow.scenario import Session
from stemflow.workloads.registry import kind_of

LENGTH = struct.Struct("!I")  # direct transport framing
MAX_MESSAGE_BYTES = 16 * 2**20
CONNECT_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 30.0
"""A subscriber gives up when nothing arrives for this long (after the session's start): a
broken route or a lost message, not a slow one (the slowest scenario link moves a 64 KiB message
in well under a second)."""
SESSION = TypeAdapter(Session)


# ---------------------------------------------------------------------------------------------
# What to send


def schedule(session: Session) -> list[Message]:
    """The messages a session's publisher sends, in order (its workload kind's schedule)."""
    return kind_of(session.workload).schedule(session.workload)


def answered(session: Session) -> bool:
    """Whether the session's subscribers answer each message (request-response)."""
    return kind_of(session.workload).answered(session.workload)


# ---------------------------------------------------------------------------------------------
# What a subscriber measures


@dataclass
class Receipt:
    """A subscriber's record: per message, when it was published and when it arrived."""

    expected: int
    received: int = 0
    bytes: int = 0
    in_order: bool = True
    duplicates: int = 0
    first_pub_t: float | None = None
    last_t: float | None = None
    delays_ms: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    """The sequence number of each delay, in arrival order (a video viewer needs to know which
    frames came)."""
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, bytes) of each new message, in arrival order: the delivery timeline a
    run with faults draws (`stemflow.emu.faults`)."""
    _next: int = 0
    _seen: set[int] = field(default_factory=set)

    def add(self, data: bytes | memoryview, now: float) -> tuple[int, float]:
        seq, pub_t = HEADER.unpack_from(data)
        if seq in self._seen:
            self.duplicates += 1
            return seq, pub_t
        self._seen.add(seq)
        if seq != self._next:
            self.in_order = False
        self._next = seq + 1
        self.received += 1
        self.bytes += len(data)
        if seq == 0:
            self.first_pub_t = pub_t
        self.last_t = now
        self.delays_ms.append((now - pub_t) * 1e3)
        self.seqs.append(seq)
        self.arrivals.append((now, len(data)))
        return seq, pub_t

    @property
    def done(self) -> bool:
        return self.received >= self.expected

    def missing(self, limit: int = 20) -> list[int]:
        """The first `limit` sequence numbers that never arrived (for diagnosis)."""
        return [i for i in range(self.expected) if i not in self._seen][:limit]

    def report(self) -> dict[str, object]:
        return {"expected": self.expected, "received": self.received, "bytes": self.bytes,
                "missing_first": self.missing(),
                "in_order": self.in_order, "duplicates": self.duplicates,
                "first_pub_t": self.first_pub_t, "last_t": self.last_t,
                "delays_ms": self.delays_ms, "seqs": self.seqs, "arrivals": self.arrivals}


# ---------------------------------------------------------------------------------------------
# Transports


class Transport:
    """Publish bytes to every subscriber of the session, and receive them (and replies)."""

    async def open_publisher(self) -> None: ...
    async def publish(self, data: bytes) -> None: ...
    def replies(self) -> AsyncIterator[bytes]: ...
    async def open_subscriber(self) -> None: ...
    def messages(self) -> AsyncIterator[bytes]: ...
    async def reply(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


def _tune(sock: socket.socket, cc: str | None) -> None:
    if cc:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _read_frames(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        try:
            head = await reader.readexactly(LENGTH.size)
        except asyncio.IncompleteReadError:
            return
        (n,) = LENGTH.unpack(head)
        if n > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {n} bytes exceeds {MAX_MESSAGE_BYTES}")
        yield await reader.readexactly(n)


class DirectTransport(Transport):
    """One TCP connection from the publisher to each subscriber; replies come back on it."""

    def __init__(self, listen: str | None, to: list[str], cc: str | None):
        self.listen, self.to, self.cc = listen, to, cc
        self.writers: list[asyncio.StreamWriter] = []
        self.readers: list[asyncio.StreamReader] = []
        self._conn: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue())

    async def open_publisher(self) -> None:
        for addr in self.to:
            host, _, port = addr.rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            _tune(sock, self.cc)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, int(port))),
                                   CONNECT_TIMEOUT_S)
            r, w = await asyncio.open_connection(sock=sock)
            self.readers.append(r)
            self.writers.append(w)

    async def publish(self, data: bytes) -> None:
        head = LENGTH.pack(len(data))
        for w in self.writers:
            w.write(head)
            w.write(data)
        await asyncio.gather(*(w.drain() for w in self.writers))

    async def replies(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def pump(r: asyncio.StreamReader) -> None:
            async for m in _read_frames(r):
                await queue.put(m)

        tasks = [asyncio.create_task(pump(r)) for r in self.readers]
        try:
            while True:
                yield await queue.get()
        finally:
            for t in tasks:
                t.cancel()

    async def open_subscriber(self) -> None:
        host, _, port = (self.listen or "").rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _tune(sock, self.cc)  # accepted sockets inherit these
        sock.bind((host, int(port)))
        sock.setblocking(False)

        async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._conn.put((r, w))

        self.server = await asyncio.start_server(accepted, sock=sock)

    async def messages(self) -> AsyncIterator[bytes]:
        r, w = await self._conn.get()
        self.writers = [w]
        async for m in _read_frames(r):
            yield m

    async def reply(self, data: bytes) -> None:
        await self.publish(data)

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if getattr(self, "server", None) is not None:
            self.server.close()


def stemflow_transport(relay: str, session: Session, name: str, cc: str | None,
                       max_rate_mbps: float | None = None, ca_file: str | None = None,
                       token: str | None = None) -> Transport:
    """The Stemflow client API as a transport (see `stemflow.client`); `ca_file`: TLS to the
    relay; `token`: the client's credential."""
    from stemflow.emu.client_transport import StemflowTransport

    return StemflowTransport(relay, session, name, cc, max_rate_mbps, ca_file, token)


# ---------------------------------------------------------------------------------------------
# The two roles


async def publisher(t: Transport, session: Session, ready: Callable[[], None],
                    start_at: float = 0.0, linger: bool = False,
                    connect_at_start: bool = False) -> dict[str, object]:
    """Publish the session's messages from `start_at` on; with `connect_at_start` the
    connections are opened then (and their handshakes count), else beforehand."""
    plan = schedule(session)
    rr = answered(session)
    if not connect_at_start:
        await t.open_publisher()
    ready()
    rtts: list[float] = []
    unanswered = 0
    if (wait := start_at - time.monotonic()) > 0:
        await asyncio.sleep(wait)
    start = time.monotonic()
    if connect_at_start:
        await t.open_publisher()
    replies = t.replies() if rr else None
    for i, m in enumerate(plan):
        if (wait := start + m.due_s - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        sent = start if i == 0 else time.monotonic()  # the first pays for any connection set-up
        await t.publish(encode(m, sent))
        if replies is not None:
            try:
                for _ in session.subscribers:
                    await asyncio.wait_for(anext(replies), IDLE_TIMEOUT_S)
                rtts.append((time.monotonic() - sent) * 1e3)
            except TimeoutError:
                unanswered += 1
    end = time.monotonic()
    if linger:
        # stay connected until the orchestrator says every subscriber is done: a publisher that
        # leaves ends its session, and what is still in flight would be cut off
        print("SENT", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await t.close()
    return {"role": "pub", "session": session.id, "messages": len(plan),
            "bytes": sum(m.size_bytes for m in plan), "start_t": start, "end_t": end,
            "rr_latencies_ms": rtts, "unanswered": unanswered}


async def subscriber(t: Transport, session: Session, name: str,
                     ready: Callable[[], None]) -> dict[str, object]:
    plan = schedule(session)
    rr = answered(session)
    receipt = Receipt(len(plan))
    await t.open_subscriber()
    ready()
    stream = t.messages()
    wait = IDLE_TIMEOUT_S + session.start_s  # the publisher starts the session at start_s
    try:
        while not receipt.done:
            data = await asyncio.wait_for(anext(stream), wait)
            wait = IDLE_TIMEOUT_S
            seq, pub_t = receipt.add(data, time.monotonic())
            if rr:
                await t.reply(HEADER.pack(seq, pub_t) + bytes(len(data) - HEADER.size))
    except (StopAsyncIteration, TimeoutError):
        pass
    await t.close()
    return {"role": "sub", "session": session.id, "subscriber": name, **receipt.report()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stemflow.emu.workload")
    ap.add_argument("role", choices=("pub", "sub"))
    ap.add_argument("--session-json", required=True, help="the scenario's session, as JSON")
    ap.add_argument("--name", required=True, help="this client's name")
    ap.add_argument("--listen", help="direct transport, subscriber: ADDR:PORT")
    ap.add_argument("--to", help="direct transport, publisher: ADDR:PORT[,ADDR:PORT...]")
    ap.add_argument("--relay", help="stemflow transport: the relay's ADDR:PORT")
    ap.add_argument("--cc", help="congestion control of this process's connections")
    ap.add_argument("--ca", help="stemflow transport: TLS to the relay, checked against this CA "
                                 "certificate")
    ap.add_argument("--token-file", help="stemflow transport: the client token to present")
    ap.add_argument("--max-rate-mbps", type=float,
                    help="stemflow transport, publisher: the rate it states to the overlay")
    ap.add_argument("--linger", action="store_true",
                    help="publisher: after the last message, print SENT and wait for a line on "
                         "stdin before leaving")
    ap.add_argument("--connect-at-start", action="store_true",
                    help="publisher: open connections at the start (their set-up is measured)")
    ap.add_argument("--start-at", type=float, default=0.0,
                    help="publisher: start at this CLOCK_MONOTONIC time (after connecting)")
    a = ap.parse_args(argv)
    session = SESSION.validate_json(a.session_json)
    if a.relay:
        token = Path(a.token_file).read_text().strip() if a.token_file else None
        t = stemflow_transport(a.relay, session, a.name, a.cc, a.max_rate_mbps, a.ca, token)
    else:
        t = DirectTransport(a.listen, (a.to or "").split(",") if a.to else [], a.cc)

    def ready() -> None:
        print("READY", flush=True)

    if a.role == "pub":
        out = asyncio.run(publisher(t, session, ready, a.start_at, a.linger, a.connect_at_start))
    else:
        out = asyncio.run(subscriber(t, session, a.name, ready))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
