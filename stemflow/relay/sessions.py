"""A relay's local view of sessions: its own subscribers and publishers, and the order of delivery.

Owns the per-topic record of local subscribers and publishers (the relay's interest, reported to
the controller), the restoration of per-(session, publisher) order at the egress relay, and the
short hold of frames that arrive before the controller has planned their session. Forwarding
and the wire are other modules' business.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stemflow.protocol import Flag, frame_flags

REORDER_TIMEOUT_S = 0.3
"""A live session's gap in sequence numbers older than this is a loss (a live frame was dropped
or a relay died), not reordering: a late video frame is worth less than the next one."""
RELIABLE_REORDER_TIMEOUT_S = 30.0
"""A reliable session's frames are never dropped while relays live, so its gaps are reordering,
however long: frames of one multicast session travel different trees, and a tree of four hops
whose outboxes are full (8 MiB each on a 60 Mbit/s hop is over a second) delivers its frames
seconds after another tree. In the emulated Fig. 1 broadcast gaps lasted more than 5 s. A gap is
given up when it outlives the time relays keep a dropped route (`RETIRED_ROUTE_KEEP_S`, 30 s):
by then its frame cannot come any more. Gaps opened by a relay that left are losses and go
after REORDER_TIMEOUT_S (`RELAY_LOST_WINDOW_S`)."""
RELAY_LOST_WINDOW_S = 5.0
"""After a relay leaves the overlay, gaps are given up as a live session's are, for this long:
frames it held are gone, and what was in flight elsewhere arrives within a few round trips."""
REORDER_MAX_FRAMES = 4096
"""Held out-of-order frames per (session, publisher) before the connections that run ahead are
paused (reliable) or the gap is skipped (live)."""
REORDER_MAX_BYTES = 32 << 20
"""Held out-of-order bytes per (session, publisher) before the connections that run ahead are
paused (reliable) or the gap is skipped (live): four outboxes' worth, more than the skew of P
connections that are paused and resumed together."""
REORDER_CREDIT_STALL_S = 0.5
"""A reliable gap that has not moved for this long has its held frames paid for (their credit
returned upstream) while they stay held. Frames of one route can overtake each other at a
transit relay (it forwards in the order its P connections bring them), so the missing frame may
wait there for credit that frames held behind the gap here keep; paying releases it. From then
on the gap holds frames up to the hard bound, as for a client's frames."""
REORDER_PAUSE_STALL_S = 5.0
"""While connections are paused for a reliable gap, frames of the session should keep coming on
the others (the slower path brings the missing ones). If none came for this long and the gap
did not move, the missing frame may be behind a paused connection (a relay forwards frames in
the order they reach it, so one connection can carry frames out of sequence order): the paused
connections are read again, and the relay does not pause for this gap any more. Five seconds:
at 1 s, relays starved of CPU (the emulation beside another job on 2 cores) saw 217 false
stalls in one Table I multipath run and lost frames at the hard bound; a merely slow path
delivers something in 5 s."""
REORDER_RECENT_FRAMES = 64
"""Whether a connection runs ahead of a gap is judged by the lowest sequence number among its
last 64 to 128 frames of the session, not by its latest one: a transit relay forwards frames in
the order they reach it from its own inbound connections, so each of its outbound connections
carries an interleaving of streams that lag one another (on loopback by over a thousand 64 KiB
frames). Such a connection's latest frame may be far ahead while the gap's frame is still
behind it; its lowest recent one is near the gap. A connection that carries one stream in order
(from the ingress relay) has every recent frame far ahead once it runs ahead."""
REORDER_PAUSE_MIN_FRAMES = 8
"""A connection is judged only after this many of its frames arrived while the gap was open."""
REORDER_HARD_FACTOR = 2
"""A reliable gap is skipped after all once its held frames pass this multiple of the limits:
paused connections still deliver what was already in their receive buffers, and a gap whose
missing frame sits behind a paused connection (two routes merging on one hop) cannot close,
so memory needs a bound that does not wait for the timeout."""
REORDER_STATES_MAX = 65536
"""Ordering states (one per session and publisher seen) kept before idle ones are forgotten;
a forgotten publisher that returns starts afresh at its next frame."""
REORDER_START_WINDOW = 4096
"""A first frame with a sequence number below this means the stream has just begun: wait for
the frames before it instead of starting mid-stream (striping may deliver frame 1 before 0).
Until the first frame is delivered that wait is bounded by REORDER_START_TIMEOUT_S, reliable or
not: a relay that starts delivering a topic after its publisher began (a new subscriber's
datacenter joining a room) never gets the frames that went elsewhere before its route existed."""
ROUTE_WAIT_S = 2.0
REORDER_START_TIMEOUT_S = ROUTE_WAIT_S
"""How long a stream's first frames may lag later ones before the relay starts where it joined:
as long as a relay holds frames for a table, so first frames held at a transit relay whose
table came late still arrive in time (shorter would lose them)."""
"""How long a relay holds live frames of a session its table does not route yet: one heartbeat
timeout, time enough for interest to reach the controller and a table to come back. A live
frame older than that has missed its deadline anyway."""
RELIABLE_TRANSIT_WAIT_S = 30.0
"""How long a transit relay holds reliable frames that overtook its table. An ingress relay holds
reliable frames until its table routes their session or says nobody else subscribes (never for
a fixed time: its publisher is paused meanwhile, so nothing is lost). A transit relay's frames
name a route of a table it has not received; 30 s is how long relays keep a dropped route
(`RETIRED_ROUTE_KEEP_S`), after which no table can name that route any more."""
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
    """Whom its frames are delivered to: `direct`, then the connections a pattern subscription
    binds to the topic (`patterns.py`), each once."""
    direct: list[Any] = field(default_factory=list)
    """The connections that subscribed to this very topic."""
    publishers: int = 0
    delay_sensitive: bool = False
    max_rate_mbps: float | None = 0.0
    """The sum of the local publishers' stated rates; None once one publisher stated none."""
    latency_budget_ms: float | None = None

    @property
    def idle(self) -> bool:
        return not self.subscribers and not self.publishers

    @property
    def reported(self) -> bool:
        """Whether the controller hears of it: subscribers bound by a pattern are the pattern's
        interest, reported once for all the topics it covers."""
        return bool(self.direct or self.publishers)

    def add_publisher(self, flags: int, max_rate_mbps: float | None,
                      latency_budget_ms: float | None) -> None:
        self.publishers += 1
        self.delay_sensitive = self.delay_sensitive or bool(flags & Flag.DELAY_SENSITIVE)
        if self.max_rate_mbps is not None:
            self.max_rate_mbps = None if max_rate_mbps is None else self.max_rate_mbps + max_rate_mbps
        if latency_budget_ms is not None:
            self.latency_budget_ms = min(latency_budget_ms, self.latency_budget_ms or math.inf)

    def interest(self) -> dict:
        """This relay's part of the topic, in the controller's vocabulary (`Interest`)."""
        out = {"topic": self.topic, "publishers": self.publishers,
               "subscribers": len(self.direct),
               "priority": "delay-sensitive" if self.delay_sensitive else "bulk"}
        if self.publishers and self.max_rate_mbps is not None:
            out["max_rate_mbps"] = self.max_rate_mbps
        if self.publishers and self.latency_budget_ms is not None:
            out["latency_budget_ms"] = self.latency_budget_ms
        return out


class RecentFrames:
    """One connection's frames of a session while a gap is open: the lowest sequence number of
    its last REORDER_RECENT_FRAMES to twice that many frames, and how many came in all."""

    __slots__ = ("low", "prev_low", "window", "total")

    def __init__(self, seq: int):
        self.low = self.prev_low = seq
        self.window = self.total = 1

    def add(self, seq: int) -> None:
        if seq < self.low:
            self.low = seq
        self.window += 1
        self.total += 1
        if self.window >= REORDER_RECENT_FRAMES:
            self.prev_low, self.low, self.window = self.low, seq, 0

    @property
    def lowest(self) -> int:
        return min(self.low, self.prev_low)


class Reorder:
    """Delivery order for one (session, publisher): frames leave in sequence-number order."""

    __slots__ = ("next", "held", "held_bytes", "paid_bytes", "since", "skipped", "late", "timeout_s",
                 "reliable", "paused", "no_pause", "free_arrival", "recent", "started")

    def __init__(self, first_seq: int, reliable: bool = False):
        self.next = 0 if first_seq < REORDER_START_WINDOW else first_seq
        self.started = self.next == first_seq  # False: waiting for the frames before the first
        self.reliable = reliable
        self.timeout_s = RELIABLE_REORDER_TIMEOUT_S if reliable else REORDER_TIMEOUT_S
        self.held: dict[int, tuple[bytes, float, Any]] = {}  # seq -> (frame, arrival, payee)
        self.held_bytes = 0
        self.paid_bytes = 0  # of `held_bytes`: frames no upstream credit stands for
        self.since = 0.0
        self.skipped = 0
        self.late = 0
        self.paused: set[Any] = set()  # connections not read while they run far ahead of the gap
        self.no_pause = False  # pausing stalled this gap: skip at the hard bound instead
        self.free_arrival = 0.0  # the last frame from a connection not paused for the gap
        self.recent: dict[Any, RecentFrames] = {}  # per connection, while a gap is open

    def saw(self, source: Any, seq: int) -> None:
        """`source` delivered frame `seq` while a gap is open; a paused connection that brings
        frames near the gap (what it had received before the pause) is read again at once."""
        r = self.recent.get(source)
        if r is None:
            self.recent[source] = RecentFrames(seq)
            return
        r.add(seq)
        if source in self.paused and not self._far_ahead(r.lowest):
            self.paused.discard(source)
            source.release_reading()

    def hold(self, seq: int, frame: bytes, now: float, pay: Any = None) -> bool:
        """Keep `frame` until the gap before it closes; `pay` (a `credit.Owner`) is told when
        it leaves. False: a frame of that number is held already (this one is paid for now)."""
        if seq in self.held:
            if pay is not None:
                pay.sent(len(frame))
            return False
        if not self.held:
            self.since = now
        self.held[seq] = (frame, now, pay)
        self.held_bytes += len(frame)
        if pay is None:
            self.paid_bytes += len(frame)
        return True

    def pay_held(self) -> int:
        """Pay now for held frames not yet paid for (they stay held), as long as the paid-for
        bytes held stay within the hard bound; how many. Unpaid frames are bounded by the
        upstream windows, paid ones by this."""
        n = 0
        held = self.held
        room = REORDER_HARD_FACTOR * REORDER_MAX_BYTES - self.paid_bytes
        for seq, (frame, t, pay) in held.items():
            if pay is not None and len(frame) <= room:
                pay.sent(len(frame))
                held[seq] = (frame, t, None)
                room -= len(frame)
                self.paid_bytes += len(frame)
                n += 1
        return n

    @property
    def overfull(self) -> bool:
        return len(self.held) > REORDER_MAX_FRAMES or self.held_bytes > REORDER_MAX_BYTES

    @property
    def hard_full(self) -> bool:
        return (len(self.held) > REORDER_HARD_FACTOR * REORDER_MAX_FRAMES
                or self.held_bytes > REORDER_HARD_FACTOR * REORDER_MAX_BYTES)

    def overflow(self, source: Any, seq: int, now: float) -> bool:
        """Held frames passed the limit as `source` delivered frame `seq`. For a reliable
        session, keep the order without loss: pause `source` if it runs far ahead of the gap,
        and hold on to the frame (True) until the hard bound; False means the caller must skip
        the gap instead.

        Only connections whose recent frames are all more than half the limit past the gap are
        paused: those run ahead (the faster of two paths, the new route after a route change),
        while a connection bringing frames near the gap may be the one that brings the gap's
        frame (a relay forwards frames in the order they reach it, not in sequence order). TCP
        carries the pause back to the publisher, as a full outbox would."""
        if not self.reliable or source is None or self.hard_full:
            return False
        if source in self.paused or self.no_pause:
            return True
        r = self.recent.get(source)
        if r is not None and r.total >= REORDER_PAUSE_MIN_FRAMES and self._far_ahead(r.lowest):
            if not self.paused:
                self.free_arrival = now  # the stall clock starts with the first pause
            self.paused.add(source)
            source.hold_reading()
        return True

    def _far_ahead(self, seq: int) -> bool:
        return (seq - self.next) * self.held_bytes / max(len(self.held), 1) > REORDER_MAX_BYTES // 2

    def _runs_ahead(self, conn: Any) -> bool:
        r = self.recent.get(conn)
        return r is not None and self._far_ahead(r.lowest)

    def moved(self) -> None:
        """The gap moved: read again the paused connections that are no longer far ahead of it
        (the next missing frame may be behind one of them)."""
        self.no_pause = False
        if not self.held:
            self.recent.clear()  # the next gap judges every connection afresh
        if self.held and (len(self.held) > REORDER_MAX_FRAMES // 2
                          or self.held_bytes > REORDER_MAX_BYTES // 2):
            for conn in [c for c in self.paused if not self._runs_ahead(c)]:
                self.paused.discard(conn)
                conn.release_reading()
        else:
            self.resume()

    def stalled(self, now: float) -> bool:
        """Connections are paused for a gap that has not moved for REORDER_PAUSE_STALL_S:
        read them again (the missing frame may be behind them) and stop pausing for it."""
        if not self.paused or now - max(self.since, self.free_arrival) <= REORDER_PAUSE_STALL_S:
            return False
        self.no_pause = True
        self.resume()
        return True

    def drop(self) -> None:
        """The session ended here: pay for what was held (the upstream's window must not shrink
        by it), let it go, and read the paused connections again."""
        for frame, _, pay in self.held.values():
            if pay is not None:
                pay.sent(len(frame))
        self.held.clear()
        self.held_bytes = self.paid_bytes = 0
        self.resume()

    def resume(self) -> None:
        paused, self.paused = self.paused, set()
        for conn in paused:
            conn.release_reading()

    def release(self, out: list) -> None:
        """Append the held frames that are now in order (the caller restarts `since` if a
        later gap remains: the timeout measures the age of the current gap)."""
        held = self.held
        while self.next in held:
            frame, _, pay = held.pop(self.next)
            self.held_bytes -= len(frame)
            out.append(frame)
            self.next += 1
            if pay is not None:
                pay.sent(len(frame))
            else:
                self.paid_bytes -= len(frame)

    def skip(self, out: list, now: float) -> None:
        """Give up on the current gap: jump to the lowest held frame and release from there."""
        if not self.held:
            return
        lowest = min(self.held)
        self.skipped += lowest - self.next
        self.next = lowest
        self.release(out)
        self.since = now
        self.moved()

    def expire(self, out: list, now: float, timeout_s: float) -> None:
        """The current gap timed out: skip it, and each later gap whose first frame after it
        arrived longer than `timeout_s` ago (a relay that lost frames lost them in bunches;
        waiting out each of those gaps in turn would stall the session for minutes)."""
        self.skip(out, now)
        while self.held:
            lowest = min(self.held)
            arrived = self.held[lowest][1]
            if now - arrived <= timeout_s:
                self.since = arrived
                break
            self.skip(out, now)


class Pending:
    """Frames of a session that has no route yet, oldest first, and the producers it paused.

    Live frames wait at most ROUTE_WAIT_S; reliable ones `reliable_wait_s` (infinite at the
    ingress: see RELIABLE_TRANSIT_WAIT_S)."""

    __slots__ = ("frames", "bytes", "dropped", "dropped_reliable", "blocked", "reliable_wait_s")

    def __init__(self, reliable_wait_s: float = math.inf) -> None:
        self.frames: deque[tuple[float, bytearray, int, Any]] = deque()  # (t, frame, class, owner)
        self.bytes = 0
        self.dropped = 0
        self.dropped_reliable = 0
        self.blocked: set[Any] = set()
        self.reliable_wait_s = reliable_wait_s

    def add(self, now: float, frame: bytearray, qclass: int, reliable: bool, source: Any,
            owner: Any = None) -> None:
        """Hold `frame`; `source` (a client connection) is paused past PENDING_MAX_BYTES of
        reliable frames; `owner` (a credit grant) hears when the frame leaves or is dropped."""
        self.frames.append((now, frame, qclass, owner))
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
        """Drop the frames that waited too long for their class (oldest first, and only from
        the front: a reliable frame keeps the live ones behind it, order is kept)."""
        while self.frames:
            t, frame, _, _ = self.frames[0]
            reliable = frame_flags(frame) & Flag.RELIABLE
            if now - t <= (self.reliable_wait_s if reliable else ROUTE_WAIT_S):
                break
            self._pop()
            self.dropped += 1
            self.dropped_reliable += bool(reliable)
        if self.bytes <= PENDING_MAX_BYTES // 2:
            self.release()

    def release(self) -> None:
        """Let the paused producers read again."""
        blocked, self.blocked = self.blocked, set()
        for source in blocked:
            source.unblock()

    def _pop(self) -> tuple[float, bytearray, int, Any]:
        item = self.frames.popleft()
        self.bytes -= len(item[1])
        if item[3] is not None:
            item[3].sent(len(item[1]))  # dropped: its credit is not owed any more
        return item

    def drain(self) -> list[tuple[float, bytearray, int, Any]]:
        items = list(self.frames)
        self.frames.clear()
        self.bytes = 0
        return items
