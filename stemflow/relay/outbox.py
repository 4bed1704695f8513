"""Bounded send queues with priority classes: what waits to go out on one peer link or client.

Owns the queueing discipline of every outgoing direction of a relay: delay-sensitive frames
leave before bulk frames; live frames that waited longer than their deadline allows, or past
the live byte bound, are dropped oldest first (and counted); reliable frames past the high-water
mark block the client connections that produced them until the queue drains below the low-water
mark (a peer's reliable frames come on credit, so they are bounded already). Which connection
carries the bytes is the owner's (peer link or client connection) business.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from stemflow.protocol import Flag

HIGH_WATER_BYTES = 8 << 20
"""Reliable bytes queued before producers are paused: one 1 Gbit/s x 64 ms bandwidth-delay
product; queueing more would only add delay, not rate."""
LOW_WATER_BYTES = 2 << 20
"""Producers resume below this, so a paused publisher refills a queue that still has work."""
LIVE_LIMIT_BYTES = 4 << 20
"""Live bytes kept per direction; a 100 Mbit/s stream loses what is older than ~0.3 s, which
would miss a 400 ms frame deadline anyway."""
LIVE_MAX_WAIT_S = 0.15
"""A live frame that waited this long in one queue is dropped: 150 ms is ITU-T G.114's bound
for one-way delay that interactive use does not notice, so a frame this late at one hop would
arrive where a newer one is already wanted. The live queue is bounded in time, not bytes."""
WRITE_BATCH_BYTES = 256 << 10
"""Bytes handed to one transport write: large enough to amortize the syscall, small enough
to interleave a delay-sensitive frame quickly and to stripe over parallel connections."""

DS_LIVE, DS_RELIABLE, BULK_LIVE, BULK_RELIABLE = range(4)


def queue_class(flags: int) -> int:
    """The queue a frame with these flags goes to."""
    ds = flags & Flag.DELAY_SENSITIVE
    rel = flags & Flag.RELIABLE
    return (DS_RELIABLE if rel else DS_LIVE) if ds else (BULK_RELIABLE if rel else BULK_LIVE)


QUEUE_CLASS = tuple(queue_class(f) for f in range(256))
"""`queue_class` by flags byte, precomputed for the per-frame path."""


class Producer(Protocol):
    """A connection whose reading can be paused (it counts how many queues block it)."""

    def block(self) -> None: ...
    def unblock(self) -> None: ...


class Outbox:
    """Queued chunks (runs of whole frames) for one direction, by queue class."""

    _stamps = itertools.count()

    def __init__(self, high: int = HIGH_WATER_BYTES, low: int = LOW_WATER_BYTES,
                 live_limit: int = LIVE_LIMIT_BYTES, live_max_wait_s: float = LIVE_MAX_WAIT_S,
                 clock: Callable[[], float] = time.monotonic):
        self.high, self.low, self.live_limit = high, low, live_limit
        self.live_max_wait_s, self.clock = live_max_wait_s, clock
        self._q: list[deque[tuple[int, bytes, int]]] = [deque() for _ in range(4)]
        self._live_times: list[deque[float]] = [deque(), deque(), deque(), deque()]
        """Per live class, the time each queued chunk came (in step with `_q`)."""
        self.bytes = 0
        self.live_bytes = 0
        self.dropped_frames = 0
        self._blocked: set[Producer] = set()

    def __bool__(self) -> bool:
        return self.bytes > 0

    def push(self, data: bytes, nframes: int, qclass: int, source: Producer | None = None) -> None:
        live = qclass in (DS_LIVE, BULK_LIVE)
        if live:
            now = self.clock()
            self._expire_live(now)
            while self.live_bytes + len(data) > self.live_limit and self.live_bytes:
                self._drop_oldest_live()
            self.live_bytes += len(data)
            self._live_times[qclass].append(now)
        self._q[qclass].append((next(self._stamps), data, nframes))
        self.bytes += len(data)
        if not live and self.bytes > self.high and source is not None and source not in self._blocked:
            self._blocked.add(source)
            source.block()

    def _drop_oldest_live(self, qclass: int | None = None) -> None:
        if qclass is None:
            qclass = BULK_LIVE if self._q[BULK_LIVE] else DS_LIVE
        _, data, n = self._q[qclass].popleft()
        self._live_times[qclass].popleft()
        self.live_bytes -= len(data)
        self.bytes -= len(data)
        self.dropped_frames += n

    def _expire_live(self, now: float) -> None:
        """Drop the live chunks that waited longer than `live_max_wait_s`."""
        oldest = now - self.live_max_wait_s
        for qclass in (DS_LIVE, BULK_LIVE):
            times = self._live_times[qclass]
            while times and times[0] < oldest:
                self._drop_oldest_live(qclass)

    def pull(self, max_bytes: int = WRITE_BATCH_BYTES) -> list[bytes]:
        """Up to `max_bytes` (at least one chunk), delay-sensitive first, oldest first in a class."""
        if self.live_bytes:
            self._expire_live(self.clock())
        out: list[bytes] = []
        taken = 0
        q, times = self._q, self._live_times
        for a, b in ((DS_LIVE, DS_RELIABLE), (BULK_LIVE, BULK_RELIABLE)):
            qa, qb = q[a], q[b]
            while (qa or qb) and (taken < max_bytes or not out):
                if qa and (not qb or qa[0][0] < qb[0][0]):
                    _, data, _ = qa.popleft()
                    times[a].popleft()
                    self.live_bytes -= len(data)
                else:
                    _, data, _ = qb.popleft()
                out.append(data)
                taken += len(data)
        self.bytes -= taken
        if self._blocked and self.bytes <= self.low:
            self.release()
        return out

    def release(self) -> None:
        """Unblock every producer this queue paused (it drained, or it is being discarded)."""
        blocked, self._blocked = self._blocked, set()
        for s in blocked:
            s.unblock()

    def discard(self) -> None:
        """Drop everything (the destination is gone), counting the frames."""
        for q in self._q:
            self.dropped_frames += sum(n for _, _, n in q)
            q.clear()
        for t in self._live_times:
            t.clear()
        self.bytes = self.live_bytes = 0
        self.release()
