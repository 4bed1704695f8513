"""A relay's local view of sessions: its own subscribers and publishers, and the order of delivery.

Owns the per-topic record of local subscribers and publishers (the relay's interest, reported to
the controller), the restoration of per-(session, publisher) order at the egress relay, and the
short hold of frames that arrive before the controller has planned their session. Forwarding
and the wire are other modules' business.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

REORDER_TIMEOUT_S = 0.3
"""A live session's gap in sequence numbers older than this is a loss (a live frame was dropped
or a relay died), not reordering: a late video frame is worth less than the next one."""
RELIABLE_REORDER_TIMEOUT_S = 5.0
"""A reliable session's frames are never dropped while relays live, and the P connections of a
window-limited WAN hop can deliver a stripe a round trip or more after the next one; so a gap is
given up only when it outlives a dead relay's detection and re-route (heartbeat timeout 2 s plus
a table push), with room to spare."""
REORDER_MAX_FRAMES = 4096
"""Held out-of-order frames per (session, publisher) before a gap is skipped regardless."""
REORDER_MAX_BYTES = 32 << 20
"""Held out-of-order bytes per (session, publisher) before a gap is skipped regardless: four
outboxes' worth, more than the skew of P connections that are paused and resumed together."""
REORDER_STATES_MAX = 65536
"""Ordering states (one per session and publisher seen) kept before idle ones are forgotten;
a forgotten publisher that returns starts afresh at its next frame."""
REORDER_START_WINDOW = 4096
"""A first frame with a sequence number below this means the stream has just begun: wait for
the frames before it instead of starting mid-stream (striping may deliver frame 1 before 0)."""
ROUTE_WAIT_S = 2.0
"""How long an ingress relay holds frames of a session the controller has not planned yet: one
heartbeat timeout, time enough for interest to reach the controller and a table to come back."""
PENDING_MAX_BYTES = 4 << 20
"""Held unplanned bytes per session: past this, live frames go oldest first and the producers
of reliable frames are paused until the route comes (or the wait ends)."""
PENDING_HARD_MAX_BYTES = 2 * PENDING_MAX_BYTES
"""Reliable frames may exceed PENDING_MAX_BYTES by what a paused producer had in flight;
past this even they are dropped, so memory stays bounded whatever a producer does."""


@dataclass
class LocalSession:
    """One topic at this relay: who subscribes here, how many publish here."""

    topic: str
    sid: int
    subscribers: list[Any] = field(default_factory=list)
    publishers: int = 0
    delay_sensitive: bool = False

    @property
    def idle(self) -> bool:
        return not self.subscribers and not self.publishers

    def interest(self) -> dict:
        return {"topic": self.topic, "publishers": self.publishers,
                "subscribers": len(self.subscribers),
                "priority": "delay-sensitive" if self.delay_sensitive else "bulk"}


class Reorder:
    """Delivery order for one (session, publisher): frames leave in sequence-number order."""

    __slots__ = ("next", "held", "held_bytes", "since", "skipped", "late", "timeout_s")

    def __init__(self, first_seq: int, reliable: bool = False):
        self.next = 0 if first_seq < REORDER_START_WINDOW else first_seq
        self.timeout_s = RELIABLE_REORDER_TIMEOUT_S if reliable else REORDER_TIMEOUT_S
        self.held: dict[int, bytes] = {}
        self.held_bytes = 0
        self.since = 0.0
        self.skipped = 0
        self.late = 0

    def hold(self, seq: int, frame: bytes, now: float) -> None:
        if not self.held:
            self.since = now
        self.held[seq] = frame
        self.held_bytes += len(frame)

    @property
    def overfull(self) -> bool:
        return len(self.held) > REORDER_MAX_FRAMES or self.held_bytes > REORDER_MAX_BYTES

    def release(self, out: list) -> None:
        """Append the held frames that are now in order (the caller restarts `since` if a
        later gap remains: the timeout measures the age of the current gap)."""
        held = self.held
        while self.next in held:
            frame = held.pop(self.next)
            self.held_bytes -= len(frame)
            out.append(frame)
            self.next += 1

    def skip(self, out: list, now: float) -> None:
        """Give up on the current gap: jump to the lowest held frame and release from there."""
        if not self.held:
            return
        lowest = min(self.held)
        self.skipped += lowest - self.next
        self.next = lowest
        self.release(out)
        self.since = now


class Pending:
    """Frames of a session that has no route yet, oldest first, and the producers it paused."""

    __slots__ = ("frames", "bytes", "dropped", "blocked")

    def __init__(self) -> None:
        self.frames: deque[tuple[float, bytearray, int]] = deque()
        self.bytes = 0
        self.dropped = 0
        self.blocked: set[Any] = set()

    def add(self, now: float, frame: bytearray, qclass: int, reliable: bool, source: Any) -> None:
        self.frames.append((now, frame, qclass))
        self.bytes += len(frame)
        limit = PENDING_HARD_MAX_BYTES if reliable else PENDING_MAX_BYTES
        while self.bytes > limit:
            self._pop()
            self.dropped += 1
        if reliable and self.bytes > PENDING_MAX_BYTES and source is not None \
                and source not in self.blocked:
            self.blocked.add(source)
            source.block()

    def expire(self, now: float) -> None:
        while self.frames and now - self.frames[0][0] > ROUTE_WAIT_S:
            self._pop()
            self.dropped += 1
        if self.bytes <= PENDING_MAX_BYTES // 2:
            self.release()

    def release(self) -> None:
        """Let the paused producers read again."""
        blocked, self.blocked = self.blocked, set()
        for source in blocked:
            source.unblock()

    def _pop(self) -> tuple[float, bytearray, int]:
        item = self.frames.popleft()
        self.bytes -= len(item[1])
        return item

    def drain(self) -> list[tuple[float, bytearray, int]]:
        items = list(self.frames)
        self.frames.clear()
        self.bytes = 0
        return items
