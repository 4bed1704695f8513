"""What a gateway keeps of each topic, and where each browser reads in it; sans-IO.

Owns the topic window (the messages a gateway received from its relay on one topic during the
last `WINDOW_S`, at most `WINDOW_BYTES`, shared by every browser that reads the topic) and a
browser's position in it (`Reader`) with the two slow-reader policies:

- live: a reader more than `LIVE_LAG_BYTES` behind the newest message skips the oldest ones
  (counted), so a slow browser sees fresh frames;
- reliable: a reader is paused where it is (its socket is full) and loses nothing while its
  position is in the window; a position the window has moved past is a gap (counted, told).

A browser's own memory is its position only: the bytes are the window's, shared, and the
window is bounded. The window also lets a browser that reconnects (here or at another gateway
subscribed to the topic) ask for what it missed (`index_since`). It is not topic history: that
is the relays' (`subscribe(topic, history=N)`). Clocks and sockets are the caller's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

WINDOW_S = 30.0
"""A reconnecting browser backs off for at most 8 s per attempt (stemflow.js) and may try two
gateways; 30 s covers that with room, and a slow reliable browser this far behind is better told
of a gap than kept."""
WINDOW_BYTES = 32 << 20
"""Three 10 MB files (the messaging app's largest) and their neighbours: a browser receiving
one stays within the window while the next is sent."""
LIVE_LAG_BYTES = 1 << 20
"""About a second of an 8 Mbit/s live stream: older frames miss any interactive deadline, so a
slow live browser skips them instead."""


class Entry(NamedTuple):
    index: int
    received_ms: float
    offset: int
    """Bytes of the topic received before this message (so lag in bytes is one subtraction)."""
    data: bytes
    topic: str | None = None
    """The topic it was published on, for a window of a pattern (`chat.*`); None otherwise."""


class Window:
    """The recent messages of one topic, oldest first, with increasing indexes."""

    def __init__(self, started_ms: float, window_s: float = WINDOW_S, window_bytes: int = WINDOW_BYTES):
        self.started_ms = started_ms
        """When the gateway subscribed: nothing before this is known here."""
        self.window_ms, self.window_bytes = window_s * 1000.0, window_bytes
        self.entries: deque[Entry] = deque()
        self.end = 0
        """Index the next message will get."""
        self.total_bytes = 0
        """Bytes ever appended (the offset the next message will get)."""
        self.bytes = 0

    @property
    def first(self) -> int:
        """Index of the oldest message still held (== end when empty)."""
        return self.entries[0].index if self.entries else self.end

    @property
    def oldest_ms(self) -> float:
        """Messages received from this time on are all held."""
        return self.entries[0].received_ms if self.entries else self.started_ms

    def append(self, data: bytes, now_ms: float, topic: str | None = None) -> Entry:
        e = Entry(self.end, now_ms, self.total_bytes, data, topic)
        self.entries.append(e)
        self.end += 1
        self.total_bytes += len(data)
        self.bytes += len(data)
        self.expire(now_ms)
        return e

    def expire(self, now_ms: float) -> None:
        """Drop what is older than the window or past its byte bound (never the newest)."""
        q = self.entries
        while len(q) > 1 and (self.bytes > self.window_bytes or q[0].received_ms < now_ms - self.window_ms):
            self.bytes -= len(q.popleft().data)
            self.started_ms = q[0].received_ms

    def get(self, index: int) -> Entry:
        return self.entries[index - self.first]

    def index_since(self, since_ms: float) -> int:
        """Index of the first held message received at or after `since_ms`."""
        for e in self.entries:
            if e.received_ms >= since_ms:
                return e.index
        return self.end


@dataclass(frozen=True)
class Skipped:
    """Messages a reader did not get: skipped by the live policy, or a reliable gap."""

    count: int
    reliable: bool


class Reader:
    """One browser subscription's position in a topic window."""

    def __init__(self, window: Window, reliable: bool, position: int | None = None):
        self.window, self.reliable = window, reliable
        self.next = window.end if position is None else position
        self.replay_until = self.next if position is None else window.end
        """Messages below this index are sent again after a reconnection (flagged REPLAYED)."""

    @property
    def pending(self) -> bool:
        return self.next < self.window.end

    def lag_bytes(self) -> int:
        w = self.window
        if self.next >= w.end:
            return 0
        start = w.get(self.next).offset if self.next >= w.first else w.entries[0].offset
        return w.total_bytes - start

    def take(self) -> tuple[Entry | None, Skipped | None]:
        """The next message to send, and what was skipped to reach it (if anything)."""
        w = self.window
        skipped = 0
        if self.next < w.first:
            skipped = w.first - self.next
            self.next = w.first
        if not self.reliable:
            while self.next < w.end - 1 and w.total_bytes - w.get(self.next).offset > LIVE_LAG_BYTES:
                self.next += 1
                skipped += 1
        entry = None
        if self.next < w.end:
            entry = w.get(self.next)
            self.next += 1
        return entry, (Skipped(skipped, self.reliable) if skipped else None)
