"""Per-session credit between relays, hop by hop: what a relay may send, and what it lets others send.

Owns the flow control of reliable frames on one hop, in the manner of HTTP/2 and QUIC stream
flow control. For each (session, route) a receiving relay grants each upstream relay a window of
bytes (`Grant`); the upstream relay sends a reliable frame of that key only while it holds
credit for it (`Credit`), and queues it per key otherwise — never in front of other sessions.
The receiver returns credit as frames *leave* it: handed to the next hop under that hop's
credit, or to local subscribers. So a session that cannot move (a stalled subscriber, a full
next hop) runs out of credit alone, and the shared peer connection keeps being read for every
other session; backpressure travels back hop by hop, to the ingress relay, which stops reading
the publisher's connection.

Both ends start every key at `INITIAL_WINDOW_BYTES` without a message (like HTTP/2's initial
window); a CREDIT frame carries an increment. The receiver never refuses a frame: credit is a
discipline of senders, so a reset (a connection of the link was lost: both ends start afresh)
costs at most a moment's accounting, never a frame.

Window size, per key on a hop: `window_bytes(rate, rtt) = WINDOW_RTTS x rate x (RTT + slack)`,
clamped to [MIN_WINDOW_BYTES, MAX_WINDOW_BYTES]. A sender with window W and a credit loop of one
RTT moves at most W / RTT; the second RTT's worth covers the credit the receiver holds back
until a quarter of the window is returnable (`UPDATE_FRACTION`) and the time frames wait in its
loop, so a session can run at twice its planned rate when the link has room.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

INITIAL_WINDOW_BYTES = 4 << 20
"""Credit each key starts with on each hop. Loopback relays move ~6 Gbit/s; assuming ~1 ms between
a frame's arrival and its departure (an estimate, not a measurement), ~0.75 MB is in that loop:
4 MiB keeps a lone bulk session at full speed before the first table, and is the per-key floor
of memory a relay may hold."""
MIN_WINDOW_BYTES = INITIAL_WINDOW_BYTES
"""No window is sized below the initial one: the formula's RTT part is tiny on loopback and in a
datacenter, where the relay's own loop, not the network, is the delay credit must cover."""
MAX_WINDOW_BYTES = 64 << 20
"""Per key per hop: 2 x 1 Gbit/s x 250 ms (the longest RTT we emulate) is 62.5 MB."""
WINDOW_RTTS = 2.0
"""Windows span two round trips of the planned rate: see the module docstring."""
WINDOW_SLACK_S = 0.005
"""Added to the hop's RTT: a relay's loop and its kernel hand a frame on within a few ms."""
UPDATE_FRACTION = 0.25
"""A receiver returns credit once a quarter of the window is returnable: one CREDIT frame per
quarter window (16 per 64 MiB), not one per frame, and the sender never starves for it."""
DEFAULT_RATE_MBPS = 1000.0
"""The rate a window is sized for when the table names none (best effort beneath the plan)."""


def window_bytes(rate_mbps: float | None, rtt_ms: float | None) -> int:
    """The window for one key on one hop: WINDOW_RTTS x rate x (RTT + WINDOW_SLACK_S), clamped."""
    rate = (rate_mbps if rate_mbps and rate_mbps > 0 else DEFAULT_RATE_MBPS) * 1e6 / 8
    rtt_s = (rtt_ms or 0.0) / 1000 + WINDOW_SLACK_S
    return int(min(MAX_WINDOW_BYTES, max(MIN_WINDOW_BYTES, WINDOW_RTTS * rate * rtt_s)))


class Valve:
    """Reasons to hold back every grant of one session at this relay (a subscriber that keeps
    its frames from leaving, under the topic's `block` policy). Grants consult it before
    returning credit; opening it lets them return what they owe."""

    __slots__ = ("holds", "grants")

    def __init__(self) -> None:
        self.holds = 0
        self.grants: set[Grant] = set()


class Grant:
    """What this relay lets one upstream relay send on one (session, route).

    `advertised`: the upstream's total credit so far (initial window plus every increment).
    `consumed`: bytes of the key that left this relay. The upstream may have sent up to
    `advertised`; it may send more once we advertise `consumed + window`."""

    __slots__ = ("peer", "sid", "route", "window", "advertised", "consumed", "due", "holds",
                 "valve", "dirty")

    def __init__(self, peer: str, sid: int, route: int, valve: Valve, window: int,
                 dirty: set[Grant]):
        self.peer, self.sid, self.route = peer, sid, route
        self.window = window
        self.advertised = INITIAL_WINDOW_BYTES
        self.consumed = 0
        self.holds = 0  # reasons of its own: the egress reorder says this route runs ahead
        self.valve = valve
        self.dirty = dirty  # the relay's set of grants that may owe an update
        self._set_due()
        valve.grants.add(self)

    def _set_due(self) -> None:
        """`due`: the `consumed` at which an update becomes worth a frame. The data path
        compares against it, so most frames cost one addition and one comparison."""
        self.due = self.advertised - self.window + int(self.window * UPDATE_FRACTION)

    def resize(self, window: int) -> None:
        self.window = window
        self._set_due()
        self.dirty.add(self)

    def sent(self, n: int) -> None:
        """`n` bytes of the key left this relay."""
        self.consumed += n
        if self.consumed >= self.due:
            self.dirty.add(self)

    def reset(self) -> None:
        """The link lost a connection: both ends start the key afresh (see the module doc)."""
        self.advertised = INITIAL_WINDOW_BYTES
        self.consumed = 0
        self._set_due()

    def update(self) -> int:
        """The increment to send now (0: nothing, or not yet worth a frame)."""
        if self.holds or self.valve.holds:
            return 0
        inc = self.consumed + self.window - self.advertised
        if inc < self.window * UPDATE_FRACTION:
            return 0
        self.advertised += inc
        self._set_due()
        return inc

    # The egress reorder pauses what runs ahead of a gap: for a peer's frames that is the key's
    # credit, not the shared connection (`sessions.Reorder` calls these on a frame's source).
    def hold_reading(self) -> None:
        self.holds += 1

    def release_reading(self) -> None:
        self.holds -= 1
        self.dirty.add(self)


class Owner(Protocol):
    """Whoever a waiting frame's bytes are owed to once it leaves: a `Grant` (the upstream relay
    that sent it) or the ingress's client connection (which stops being read while it waits)."""

    def sent(self, n: int) -> None: ...


class Copies:
    """One frame queued for several next hops (a tree branch): its owner hears once, when the
    last copy leaves."""

    __slots__ = ("owner", "left")

    def __init__(self, owner: Owner, copies: int):
        self.owner, self.left = owner, copies

    def sent(self, n: int) -> None:
        self.left -= 1
        if self.left == 0:
            self.owner.sent(n)


class Credit:
    """This relay's credit for one (peer, session, route), and the frames waiting for more.

    Frames of a key wait in order; once one waits, later ones wait behind it, so a key's frames
    leave in the order they came."""

    __slots__ = ("avail", "waiting", "waiting_bytes")

    def __init__(self) -> None:
        self.avail = INITIAL_WINDOW_BYTES
        self.waiting: deque[tuple[bytes, int, Any]] = deque()  # (frame, queue class, owner)
        self.waiting_bytes = 0

    def wait(self, frame: bytes, qclass: int, owner: Owner | None) -> None:
        self.waiting.append((frame, qclass, owner))
        self.waiting_bytes += len(frame)

    def grant(self, n: int) -> list[tuple[bytes, int]]:
        """`n` bytes more credit: the waiting frames it lets leave, in order (their owners told)."""
        self.avail += n
        out: list[tuple[bytes, int]] = []
        q = self.waiting
        while q and len(q[0][0]) <= self.avail:
            frame, qclass, owner = q.popleft()
            size = len(frame)
            self.avail -= size
            self.waiting_bytes -= size
            out.append((frame, qclass))
            if owner is not None:
                owner.sent(size)
        return out
