"""The relay's decisions, sans-IO: frames, tables and time in; small typed actions out.

Owns everything a relay decides — the HELLO of each connection, local sessions and interest,
the ingress route of a new frame, next hops from the compiled table, frames held until their
table comes, table installation with the retirement of dropped routes (make-before-break),
per-(session, publisher) order and local delivery, which connections to stop reading, the
counters and the report body — and nothing it does: it never touches a socket, a clock or a
queue. `RelayCore` is driven like h11's connection or `stemflow.controller.Controller`:

    actions = core.receive(conn, receive_buffer, now)   # frames a connection delivered
    actions = core.install(table, peers, now)           # a table push
    actions = core.tick(now, backlogged)                 # timers: gaps, held frames, linger

The asyncio shell (`server.py`) carries the actions out over its sockets and outboxes; the
simulator asks the same object which route a frame takes. Runs of frames leave as ranges of the
connection's `ReceiveBuffer` (`SendRuns`), so forwarding copies nothing the shell does not copy.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stemflow.protocol import (
    HEADER_SIZE,
    MAX_TOPIC_BYTES,
    Flag,
    FrameType,
    ProtocolError,
    ReceiveBuffer,
    encode,
    encode_json,
    frame_flags,
    frame_ids,
    frame_route,
    header,
    parse_advertise,
    parse_history_request,
    session_id,
    set_frame_route,
)
from stemflow.relay.acks import EGRESS, RELAY_LOST_GAP_S, Acks, told_frame
from stemflow.relay.credit import (
    INITIAL_WINDOW_BYTES,
    Copies,
    Credit,
    Grant,
    Owner,
    Valve,
    window_bytes,
)
from stemflow.relay.forwarding import Forwarding, Route, compile_table
from stemflow.relay.history import History, HistoryPolicy, Out, ToClient
from stemflow.relay.outbox import BULK_RELIABLE, DS_RELIABLE, QUEUE_CLASS, queue_class
from stemflow.relay.patterns import PatternSubscriptions
from stemflow.relay.sessions import (
    RELAY_LOST_WINDOW_S,
    RELIABLE_TRANSIT_WAIT_S,
    REORDER_CREDIT_STALL_S,
    REORDER_START_TIMEOUT_S,
    REORDER_STATES_MAX,
    REORDER_TIMEOUT_S,
    LocalSession,
    Pending,
    Reorder,
)
from stemflow.relay.slow import DISCONNECT, SlowSubscriberPolicy
from stemflow.routing.route_ids import ROUTE_ID_REUSE_S
from stemflow.security.certs import Identity
from stemflow.security.membership import check_member
from stemflow.security.permissions import Authenticator, Refused
from stemflow.security.permissions import Grant as Rights
from stemflow.security.schema import loads
from stemflow.subjects import PatternError, is_pattern, matches, validate_pattern

log = logging.getLogger("stemflow.relay")

RETIRED_ROUTE_KEEP_S = ROUTE_ID_REUSE_S / 2
"""A route the newest table dropped still forwards this long (30 s): enough for a frame to leave
the fullest outbox on the slowest link we emulate (16 MiB at 10 Mbit/s is 13 s) and cross it."""
PUBLISHER_LINGER_S = 1.0
"""A departed publisher's interest is withdrawn this late, so its last frames (held until the
session is planned) still find a route."""
RELIABLE_CLASSES = (DS_RELIABLE, BULK_RELIABLE)
SUBSCRIBER_LINGER_S = 10.0
"""A subscriber of a topic with history whose connection was lost (its network blinked, or it
was killed) stays subscribed this long: the relay keeps delivering the topic and recording its
history without a break, so the subscriber that reconnects resumes from its store without a
gap (`stemflow.client`, `reconnect=True`). NATS keeps a durable consumer; ten seconds covers a
reconnect to a relay that restarts."""

CLIENT_WAIT_HIGH_BYTES = 8 << 20
"""Bytes of one publishing client's frames waiting for credit before its connection stops being
read: two initial windows, so a publisher keeps a hop busy while its first credit returns."""
CLIENT_WAIT_LOW_BYTES = CLIENT_WAIT_HIGH_BYTES // 4
"""It is read again below this, with a window's worth still queued to keep the hop busy."""

DATA = int(FrameType.DATA)
DELIVERED = int(FrameType.DELIVERED)
PING = int(FrameType.PING)
CREDIT = int(FrameType.CREDIT)
ACK_REQUESTED = int(Flag.ACK_REQUESTED)
RELIABLE = int(Flag.RELIABLE)
DROPPED = int(Flag.DROPPED)
HISTORY_TYPES = frozenset(int(t) for t in (FrameType.HISTORY_REQUEST, FrameType.HISTORY,
                                           FrameType.HISTORY_END))


# -- actions (outputs) ----------------------------------------------------------------------------


@dataclass(slots=True)
class SendRuns:
    """Write runs of whole frames to peer relays: per peer, [start, stop, queue class, frames]
    ranges of `view` (the source connection's receive buffer, valid only while carried out)."""

    runs: dict[str, list[list[int]]]
    view: memoryview
    source: Conn | None


@dataclass(slots=True)
class SendFrames:
    """Write frames the core held (copies it owns) to one peer relay: (frame, queue class)."""

    peer: str
    frames: list[tuple[bytes, int]]


@dataclass(slots=True)
class Deliver:
    """Hand frames, in order, to every local subscriber of a session: (bytes or view, frames)."""

    subscribers: list[Conn]
    chunks: list[tuple[bytes | memoryview, int]]
    qclass: int
    source: Conn | None


@dataclass(slots=True)
class Reply:
    """Bytes for one connection alone: a HELLO answer, a PONG, ACKs, an ERROR."""

    conn: Conn
    data: bytes


@dataclass(slots=True)
class PauseReading:
    conn: Conn


@dataclass(slots=True)
class ResumeReading:
    conn: Conn


@dataclass(slots=True)
class Close:
    """Send `reason` as an ERROR frame and close the connection; `abort`: at once, dropping
    what is queued for it (a slow consumer's backlog would otherwise go out first)."""

    conn: Conn
    reason: str
    abort: bool = False


@dataclass(slots=True)
class PeersChanged:
    """The relays this one sends to, by name and address: dial new ones, drop the rest."""

    peers: dict[str, str]


@dataclass(slots=True)
class InterestChanged:
    """Local interest moved: send a report (without link measurements) soon."""


Action = (SendRuns | SendFrames | Deliver | Reply | PauseReading | ResumeReading | Close
          | PeersChanged | InterestChanged)


# -- connections as the core sees them ----------------------------------------------------------------


class Conn:
    """One accepted connection: a client or a peer relay, as its HELLO says. `io` is the
    shell's object for it, opaque here; actions name the `Conn` and the shell finds `io`.

    A peer's connections are never paused (its sessions are held back by credit, each alone);
    a client's connection is, for its own frames: while too many of them wait for credit or for
    a table, or its subscriber queue is full."""

    __slots__ = ("core", "io", "role", "peer_dc", "advertised", "subscribed", "patterns",
                 "named", "read_holds", "grants", "waiting", "wait_held", "backlogged_at",
                 "valves_held", "grant", "identity", "accepted", "told")

    def __init__(self, core: RelayCore, io: Any = None):
        self.core, self.io = core, io
        self.role = ""  # "client" or "peer", after HELLO
        self.peer_dc = ""
        self.advertised: dict[int, tuple[str, int]] = {}  # sid -> (topic, flags)
        self.subscribed: set[int] = set()  # sessions delivered to it, directly or by a pattern
        self.patterns: set[int] = set()  # the session ids of its pattern subscriptions
        self.named: set[int] = set()  # sessions whose topic a TOPIC frame told it
        self.read_holds = 0  # reasons not to read now: a full queue it fed, a reorder gap
        self.grants: dict[tuple[int, int], Grant] = {}  # a peer's: what it may send us
        self.waiting = 0  # a client's: bytes of its frames waiting for credit
        self.wait_held = False
        self.backlogged_at: float | None = None  # a subscriber's: since when its queue is full
        # and it has read nothing
        self.valves_held: list[Valve] = []
        self.grant: Rights | None = None  # a client's rights, when the relay checks tokens
        self.identity: Identity | None = None  # whom its TLS certificate names, if any
        self.accepted: dict[int, int] = {}
        """A publishing client's: per sid | origin << 32, the next reliable seq this relay read."""
        self.told: dict[int, int] = {}
        """What it was told is acknowledged end to end (`acks.py`), by the same key."""

    def hold_reading(self) -> None:
        """Stop reading for one more reason (reading resumes when every reason is released)."""
        self.read_holds += 1
        if self.read_holds == 1:
            self.core._out.append(PauseReading(self))

    def release_reading(self) -> None:
        self.read_holds -= 1
        if self.read_holds == 0:
            self.core._out.append(ResumeReading(self))

    # The Producer protocol of queues this client connection fed (`Outbox`, `Pending`).
    block = hold_reading
    unblock = release_reading

    def wait(self, n: int) -> None:
        """`n` bytes of this client's frames wait for credit."""
        self.waiting += n
        if not self.wait_held and self.waiting > CLIENT_WAIT_HIGH_BYTES:
            self.wait_held = True
            self.hold_reading()

    def sent(self, n: int) -> None:
        """`n` bytes of this client's frames left on credit (the `credit.Owner` protocol)."""
        self.waiting -= n
        if self.wait_held and self.waiting <= CLIENT_WAIT_LOW_BYTES:
            self.wait_held = False
            self.release_reading()


COALESCE_PIECE_BYTES = 16 << 10
"""Pieces for one subscriber smaller than this on average are joined into one write (a copy of
a few KiB per piece is cheaper than a send syscall); larger runs are written from the receive
buffer without a copy."""


# -- the core -----------------------------------------------------------------------------------------


class RelayCore:
    """Sans-IO relay. Every public method takes the time and returns the actions to carry out."""

    def __init__(self, dc: str, static_peers: Mapping[str, str] | None = None,
                 slow: SlowSubscriberPolicy | None = None,
                 auth: Authenticator | None = None, members_only: bool = False,
                 history: HistoryPolicy | None = None, acks: bool = True):
        self.dc = dc
        self.slow = slow or SlowSubscriberPolicy()
        self.auth = auth
        """Client tokens and topic permissions (`stemflow.security.permissions`); None: open."""
        self.members_only = members_only
        """A peer's HELLO needs a certificate naming that relay (`stemflow.security.membership`)."""
        self.static_peers = dict(static_peers or {})
        self.fwd = Forwarding()
        self.peers: set[str] = set(self.static_peers)
        self.sessions: dict[int, LocalSession] = {}
        self.patterns = PatternSubscriptions()
        """Subscriptions to patterns (`chat.*`), bound to the topics they cover (`patterns.py`)."""
        self.reorder: dict[tuple[int, int], Reorder] = {}
        self.pending: dict[int, Pending] = {}
        self.transit: dict[int, Pending] = {}
        self.counters: Counter[str] = Counter()
        self.history = History(history, self.counters)
        """Topic history kept here and requests for it (`history.py`)."""
        self._grants: dict[str, dict[tuple[int, int], Grant]] = {}
        """Per upstream peer, per (session, route): what we let it send (`credit.Grant`)."""
        self._peer_conns: dict[str, set[Conn]] = {}
        """Each peer's connections to us: credit for it goes back on any of them."""
        self.credits: dict[tuple[str, int, int], Credit] = {}
        """(peer, session, route) -> what we may still send there, and what waits for more."""
        self._valves: dict[int, Valve] = {}
        self._dirty: set[Grant] = set()
        """Grants that may owe their upstream an update (flushed after every entry point)."""
        self._rates: dict[tuple[int, int], float] = {}
        self._rtt_ms: dict[str, float] = {}
        self._backlogged: set[Conn] = set()
        self._known_relays: set[str] = set()
        self._relay_lost_at = -RELAY_LOST_WINDOW_S
        self._current_routes: dict[tuple[int, int], Route] = {}
        self._retired: dict[tuple[int, int], tuple[float, Route]] = {}
        """Routes the controller dropped, kept until the time given: see `_retire_routes`."""
        self._control_version = -1
        self._lingering: list[tuple[float, int]] = []  # (withdraw at, sid) of departed publishers
        self._acks_held: dict[int, list[tuple[Conn, int, int, bool]]] = {}
        """Per session, unary publishes held for a table: (connection, seq, origin, delivered
        here too); their ACK says whether they went anywhere once the table does."""
        self.acks = Acks(acks)
        """End-to-end acknowledgements of reliable sessions (`acks.py`)."""
        self._publishing: set[Conn] = set()
        """Client connections that advertised a reliable session (they hear DELIVERED)."""
        self._subscriber_linger: list[tuple[float, Conn, int]] = []
        self._out: list[Action] = []

    def _take(self) -> list[Action]:
        if self._dirty:
            self._flush_credit()
        out, self._out = self._out, []
        return out

    # -- connections ------------------------------------------------------------------------------

    def connection(self, io: Any = None) -> Conn:
        """A new accepted connection (its HELLO comes in `receive`)."""
        return Conn(self, io)

    def connection_lost(self, conn: Conn, now: float) -> list[Action]:
        if self.auth is not None:
            self.auth.forget(conn)
        for sid, held in list(self._acks_held.items()):
            self._acks_held[sid] = [a for a in held if a[0] is not conn]
        if conn.role == "peer":
            self._peer_conns.get(conn.peer_dc, set()).discard(conn)
            for g in conn.grants.values():  # the upstream starts afresh too (`credit.py`)
                g.reset()
        if conn.backlogged_at is not None:
            self._subscriber_caught_up(conn)
        self._publishing.discard(conn)
        for sid in [*conn.patterns, *conn.subscribed]:
            if self._resumable(sid):
                self._subscriber_linger.append((now + SUBSCRIBER_LINGER_S, conn, sid))
            else:
                self._unsubscribe(conn, sid)
        for sid in list(conn.advertised):
            self._unadvertise(conn, sid, now + PUBLISHER_LINGER_S)
        return self._take()

    def _resumable(self, sid: int) -> bool:
        """Whether a lost subscriber of session or pattern `sid` may come back for what it missed:
        with acknowledgements on and history kept of its topic (a pattern's: of a topic it covers,
        or of all of them), its subscription stays while it reconnects, so this relay goes on
        delivering (and keeping) that topic's messages meanwhile and no publisher hears that
        nobody subscribes."""
        if not (self.acks.enabled and self.history.active):
            return False
        policy = self.history.policy
        p = self.patterns.by_sid.get(sid)
        if p is None:
            s = self.sessions.get(sid)
            return s is not None and policy.of(s.topic) is not None
        return policy.of(p.pattern) is not None or any(
            policy.of(s.topic) is not None for s in self.sessions.values() if matches(p.pattern, s.topic))

    def block(self, conn: Conn) -> list[Action]:
        """A queue of the shell's that client `conn` fed is full: stop reading it."""
        conn.block()
        return self._take()

    def unblock(self, conn: Conn) -> list[Action]:
        conn.unblock()
        return self._take()

    # -- credit (`credit.py`) -----------------------------------------------------------------------

    def credit(self, peer: str, sid: int, route: int, n: int) -> list[Action]:
        """`peer` lets us send `n` more bytes of (`sid`, `route`): what waited for it leaves."""
        c = self.credits.get((peer, sid, route))
        if c is None:
            c = self.credits[(peer, sid, route)] = Credit()
        frames = c.grant(n)
        if frames:
            self._send_frames(peer, frames)
        return self._take()

    def peer_reset(self, peer: str) -> list[Action]:
        """One of our connections to `peer` was lost: what it carried is gone, and `peer` starts
        our keys afresh, so we do (whatever waited leaves on the initial credit). Publishing
        clients are told to resend what is not acknowledged end to end (`acks.py`)."""
        if self.acks.enabled:
            self.acks.connection_reset()
        for (name, _, _), c in self.credits.items():
            if name == peer:
                frames = c.grant(INITIAL_WINDOW_BYTES - c.avail)
                if frames:
                    self._send_frames(peer, frames)
        return self._take()

    def link_rtt(self, peer: str, rtt_ms: float | None) -> None:
        """The measured RTT to `peer`: windows we grant it are sized with it (at the next table)."""
        if rtt_ms is not None:
            self._rtt_ms[peer] = rtt_ms

    def _grant(self, conn: Conn, sid: int, route: int) -> Grant:
        g = conn.grants[(sid, route)] = Grant(
            conn.peer_dc, sid, route, self._valve(sid),
            window_bytes(self._rates.get((sid, route)), self._rtt_ms.get(conn.peer_dc)),
            self._dirty)
        return g

    def _credit(self, r: Route, peer: str, sid: int, route: int) -> Credit:
        c = self.credits.get((peer, sid, route))
        if c is None:
            c = self.credits[(peer, sid, route)] = Credit()
        r.credits[peer] = c
        return c

    def _valve(self, sid: int) -> Valve:
        v = self._valves.get(sid)
        if v is None:
            v = self._valves[sid] = Valve()
        return v

    def _flush_credit(self) -> None:
        """Send the updates the dirty grants owe, one Reply per upstream connection."""
        dirty = list(self._dirty)
        self._dirty.clear()  # the same set: every grant holds it
        frames: dict[Conn, list[bytes]] = {}
        for g in dirty:
            inc = g.update()
            if inc:
                conns = self._peer_conns.get(g.peer)
                if conns:
                    frames.setdefault(next(iter(conns)), []).append(
                        header(CREDIT, g.sid, inc, 0, g.route))
        self._out += [Reply(c, b"".join(f)) for c, f in frames.items()]

    def _send_frames(self, peer: str, frames: list[tuple[bytes, int]]) -> None:
        if peer in self.peers:
            self._out.append(SendFrames(peer, frames))
        else:
            self.counters["no_peer"] += len(frames)

    def _forward_held(self, sid: int, route: int, frame: bytes, qclass: int, peers: Iterable[str],
                      owner: Owner | None, sends: dict[str, list[tuple[bytes, int]]]) -> None:
        """A frame the core held (copied): to `peers`, on credit if reliable, else waiting for it."""
        if not frame_flags(frame) & RELIABLE:
            for p in peers:
                sends.setdefault(p, []).append((frame, qclass))
            if owner is not None:
                owner.sent(len(frame))
            return
        waiting = []
        for p in peers:
            c = self.credits.get((p, sid, route))
            if c is None:
                c = self.credits[(p, sid, route)] = Credit()
            if c.waiting or c.avail < len(frame):
                waiting.append(c)
            else:
                c.avail -= len(frame)
                sends.setdefault(p, []).append((frame, qclass))
        if not waiting:
            if owner is not None:
                owner.sent(len(frame))
            return
        o = owner if owner is None or len(waiting) == 1 else Copies(owner, len(waiting))
        for c in waiting:
            c.wait(frame, qclass, o)
        if type(owner) is Conn:
            owner.wait(len(frame))

    # -- slow subscribers (`slow.py`) -----------------------------------------------------------

    def subscriber_backlogged(self, conn: Conn, on: bool, now: float) -> list[Action]:
        """Client `conn`'s queue crossed its high (`on`) or low water mark. While it is full,
        its reliable sessions return no credit upstream (they wait for it alone); a session
        whose policy is `disconnect` waits at most the deadline (`tick`)."""
        if on and conn.backlogged_at is None:
            conn.backlogged_at = now
            self._backlogged.add(conn)
            for sid in conn.subscribed:
                v = self._valve(sid)
                v.holds += 1
                conn.valves_held.append(v)
        elif not on and conn.backlogged_at is not None:
            self._subscriber_caught_up(conn)
        return self._take()

    def subscriber_progress(self, conn: Conn, now: float) -> None:
        """Client `conn` read from its full queue (its socket drained; the shell's transport
        asked for more). The `disconnect` deadline runs from its last progress: it is for a
        consumer that stopped, not for one that reads steadily but slower than the topic
        (several trees' windows in flight keep such a queue above its low mark for seconds,
        and in the emulated Fig. 1 file share every subscriber was cut for it)."""
        if conn.backlogged_at is not None:
            conn.backlogged_at = now

    def _subscriber_caught_up(self, conn: Conn) -> None:
        conn.backlogged_at = None
        self._backlogged.discard(conn)
        for v in conn.valves_held:
            v.holds -= 1
            self._dirty.update(v.grants)
        conn.valves_held = []

    def _cut_slow_subscribers(self, now: float) -> None:
        deadline = self.slow.deadline_s
        for conn in [c for c in self._backlogged if now - c.backlogged_at > deadline]:
            topics = [s.topic for sid in conn.subscribed if (s := self.sessions.get(sid))]
            cut = [t for t in topics if self.slow.of(t) == DISCONNECT]
            if cut:
                self.counters["slow_subscriber_disconnects"] += 1
                log.warning("relay %s: disconnecting a slow subscriber of %s: its queue has "
                            "been full for %.1f s", self.dc, ", ".join(cut), now - conn.backlogged_at)
                self._subscriber_caught_up(conn)
                for sid in [*conn.patterns, *conn.subscribed]:  # nothing more goes to it
                    self._unsubscribe(conn, sid)
                self._out.append(Close(conn, f"slow consumer: your queue for {cut[0]} was full "
                                             f"for over {deadline:g} s", abort=True))

    def count(self, counter: str, n: int = 1) -> None:
        """Counters the shell keeps (frames its queues dropped) join the core's."""
        self.counters[counter] += n

    # -- the data path ----------------------------------------------------------------------------

    def receive(self, conn: Conn, rb: ReceiveBuffer, now: float) -> list[Action]:
        """The complete frames in `rb`, from one connection. Forwarded frames leave as ranges
        of `rb` (`SendRuns`, `Deliver`): carry the actions out before the buffer is read into
        again. A malformed frame ends the scan with `Close` for this connection, after the
        actions for the frames before it.

        A reliable frame goes to a next hop only on credit (`credit.py`); without it, a copy
        waits for that hop's CREDIT, and what the frame owes its sender (credit back to the
        upstream relay, or room for the publishing client) is paid when it leaves."""
        buf = rb.buf
        fwd = self.fwd
        routes, ingress, unrouted = fwd.routes, fwd.ingress, fwd.unrouted
        sessions, dirty = self.sessions, self._dirty
        runs: dict[str, list[list[int]]] = {}
        local: list[tuple[int, int, int, int, int, int, Any, Any]] = []
        acks: list[bytes] = []
        is_client = conn.role == "client"
        is_peer = conn.role == "peer"
        grants = conn.grants
        accepted = conn.accepted
        acking = self.acks.enabled
        owner: Any = None
        close: Close | None = None
        # Lookups of the previous frame's session, reused while frames of one session follow
        # each other (they do, in runs): tables and sessions change between reads, or on a
        # control frame, which resets them.
        m_sess = m_route = -1
        m_here = False
        m_picker: Any = None
        m_r: Any = None
        m_owner: Any = None
        try:
            for typ, flags, route, sess, origin, seq, pos, stop in rb.frames():
                if typ == DATA and (is_peer or is_client):
                    size = stop - pos
                    qclass = QUEUE_CLASS[flags]
                    reliable = flags & RELIABLE
                    if is_client:
                        if sess != m_sess:
                            if sess not in conn.advertised:
                                raise ProtocolError(f"DATA for session {sess:#x} before ADVERTISE")
                            s = sessions.get(sess)
                            m_here = s is not None and bool(s.subscribers)
                            m_picker = ingress.get(sess)
                            m_sess, m_route = sess, -1
                        here = m_here
                        if reliable and acking:
                            accepted[sess | origin << 32] = seq + 1
                        if here:
                            local.append((sess, origin, seq, pos, stop, qclass, conn, None))
                        picker = m_picker
                        if picker is None:
                            if sess in unrouted:
                                if not here:
                                    self.counters["no_subscriber"] += 1
                                if flags & ACK_REQUESTED:  # DROPPED: nobody gets it
                                    acks.append(header(FrameType.ACK, sess, seq,
                                                       0 if here else DROPPED, 0, origin))
                            else:
                                self._hold(self.pending, sess, bytearray(buf[pos:stop]), qclass,
                                           conn, now)
                                if flags & ACK_REQUESTED:  # answered once its fate is known
                                    self._acks_held.setdefault(sess, []).append(
                                        (conn, seq, origin, bool(here)))
                            continue
                        if flags & ACK_REQUESTED:
                            acks.append(header(FrameType.ACK, sess, seq, 0, 0, origin))
                        chosen = picker.only
                        if chosen is None:
                            chosen = picker.pick(size)
                        if chosen != route:
                            rb.set_route(pos, chosen)
                            route = chosen
                        if route != m_route:
                            m_r, m_route = routes.get((sess, route)), route
                        r = m_r
                        if r is None:
                            self.counters["no_route"] += 1
                            continue
                        peers = r.peers if r.split is None else r.resolve(size)[0]
                        owner = conn
                    else:
                        if sess != m_sess or route != m_route:
                            m_sess, m_route = sess, route
                            m_r, m_owner = routes.get((sess, route)), None
                        r = m_r
                        if reliable:
                            owner = m_owner
                            if owner is None:
                                owner = m_owner = (grants.get((sess, route))
                                                   or self._grant(conn, sess, route))
                        if r is None:
                            # The frame overtook our table: deliver it if we can, else hold it
                            # for the table (never guess a next hop: that could loop).
                            s = sessions.get(sess)
                            if s is not None and s.subscribers:  # paid once delivered in order
                                local.append((sess, origin, seq, pos, stop, qclass,
                                              owner if reliable else conn,
                                              owner if reliable else None))
                            else:
                                self._hold(self.transit, sess, bytearray(buf[pos:stop]), qclass,
                                           None, now, owner if reliable else None)
                            continue
                        if r.split is None:
                            peers, here = r.peers, r.local
                        else:
                            peers, here = r.resolve(size)
                    waiting = None
                    for p in peers:
                        if reliable:
                            c = r.credits.get(p) or self._credit(r, p, sess, route)
                            if c.waiting or c.avail < size:
                                if waiting is None:
                                    waiting = [c]
                                else:
                                    waiting.append(c)
                                continue
                            c.avail -= size
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
                    if is_client:
                        if waiting is not None:
                            frame = bytes(buf[pos:stop])
                            o = owner if len(waiting) == 1 else Copies(owner, len(waiting))
                            for c in waiting:
                                c.wait(frame, qclass, o)
                            conn.wait(size)
                    elif not reliable:
                        if here:
                            local.append((sess, origin, seq, pos, stop, qclass, conn, None))
                    elif waiting is not None or here:
                        # Paid when every copy has left: those waiting for a next hop's credit,
                        # and the local one once it is delivered in order (so what an egress
                        # holds for a reorder gap stays within the upstream's window).
                        copies = len(waiting or ()) + (1 if here else 0)
                        o = owner if copies == 1 else Copies(owner, copies)
                        if waiting is not None:
                            frame = bytes(buf[pos:stop])
                            for c in waiting:
                                c.wait(frame, qclass, o)
                        if here:
                            local.append((sess, origin, seq, pos, stop, qclass, owner, o))
                    else:
                        owner.consumed += size  # it left at once
                        if owner.consumed >= owner.due:
                            dirty.add(owner)
                elif typ == PING:
                    acks.append(encode(FrameType.PONG, rb.payload(pos, stop), seq=seq))
                elif typ in HISTORY_TYPES:
                    self._history_frame(conn, typ, sess, seq, buf[pos:stop], now)
                elif typ == DELIVERED and is_peer:
                    s = sessions.get(sess)
                    if s is not None and s.publishers > 0:
                        self.acks.from_peer(conn.peer_dc, sess, origin, seq, flags, now, True)
                        if not flags & EGRESS:  # tell the publisher now: half the loop
                            self._tell(sess | origin << 32, now)
                    else:
                        self.acks.from_peer(conn.peer_dc, sess, origin, seq, flags, now, False)
                else:
                    self._control(conn, FrameType(typ), sess, flags, rb.payload(pos, stop), now)
                    is_client, is_peer = conn.role == "client", conn.role == "peer"
                    grants = conn.grants
                    m_sess = m_route = -1
        except ProtocolError as e:
            self.counters[e.counter if isinstance(e, Refused) else "protocol_errors"] += 1
            close = Close(conn, str(e))
        finally:
            out = self._out
            if runs:
                if not runs.keys() <= self.peers:
                    self._count_missing_peers(runs)
                if runs:
                    out.append(SendRuns(runs, rb.view, conn))
            if local:
                self._deliver_local(buf, local, conn, now)
            if acks:
                out.append(Reply(conn, b"".join(acks)))
        if close is not None:
            out.append(close)
        if dirty:
            self._flush_credit()
        out, self._out = self._out, []
        return out

    def _count_missing_peers(self, runs: dict[str, list[list[int]]]) -> None:
        for name in [n for n in runs if n not in self.peers]:
            self.counters["no_peer"] += sum(x[3] for x in runs.pop(name))

    def _control(self, conn: Conn, typ: FrameType, sess: int, flags: int, payload: bytes,
                 now: float) -> None:
        if not conn.role:
            if typ is not FrameType.HELLO:
                raise ProtocolError(f"expected HELLO first, got {typ.name}")
            hello = loads(payload, "HELLO")
            role = hello.get("role") if isinstance(hello, dict) else None
            if role not in ("client", "peer"):
                raise ProtocolError(f"HELLO: unknown role {role!r}")
            if role == "client" and self.auth is not None:
                conn.grant = self.auth.admit(conn, hello, now)
            elif role == "peer" and self.members_only:
                check_member(conn.identity, str(hello.get("dc", "")))
            conn.role = role
            conn.peer_dc = str(hello.get("dc", ""))
            if role == "peer":  # a peer's keys are one grant across its connections
                self._peer_conns.setdefault(conn.peer_dc, set()).add(conn)
                conn.grants = self._grants.setdefault(conn.peer_dc, {})
            else:
                self._out.append(Reply(conn, encode_json(FrameType.HELLO, {
                    "role": "relay", "dc": self.dc, "acks": self.acks.enabled})))
            return
        if conn.role != "client":
            raise ProtocolError(f"unexpected {typ.name} from a peer relay")
        if typ is FrameType.ADVERTISE:
            topic, options = parse_advertise(payload)
            self._check_topic(topic, sess)
            if is_pattern(topic):
                raise ProtocolError(f"cannot publish on {topic!r}: '*' and '>' are wildcards, "
                                    "for subscriptions only")
            if conn.grant is not None:
                self.auth.check_publish(conn.grant, topic)
            self._advertise(conn, topic, flags, options)
        elif typ in (FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.UNADVERTISE):
            if len(payload) > MAX_TOPIC_BYTES:
                raise ProtocolError(f"topic longer than {MAX_TOPIC_BYTES} bytes")
            try:
                topic = payload.decode()
            except UnicodeDecodeError:
                raise ProtocolError("topic is not UTF-8") from None
            self._check_topic(topic, sess)
            if typ is FrameType.SUBSCRIBE and is_pattern(topic):
                try:
                    validate_pattern(topic)
                except PatternError as e:
                    raise ProtocolError(str(e)) from None
            if typ is FrameType.SUBSCRIBE:
                if conn.grant is not None:
                    self.auth.check_subscribe(conn.grant, topic)
                self._subscribe(conn, topic)
            elif typ is FrameType.UNSUBSCRIBE:
                self._unsubscribe(conn, sess)
            else:
                self._unadvertise(conn, sess, now)
        else:
            raise ProtocolError(f"unexpected {typ.name} from a client")

    def _history_frame(self, conn: Conn, typ: int, sess: int, seq: int, frame: bytearray,
                       now: float) -> None:
        """A history request (from a client or a peer relay) or a peer's answer (`history.py`)."""
        name = FrameType(typ).name
        if not conn.role:
            raise ProtocolError(f"expected HELLO first, got {name}")
        h, payload = self.history, bytes(frame[HEADER_SIZE:])
        if typ == FrameType.HISTORY_REQUEST:
            topic, count = parse_history_request(payload)
            self._check_topic(topic, sess)
            if conn.role == "client":
                if conn.grant is not None:
                    self.auth.check_subscribe(conn.grant, topic)
                self._history_out(h.request(conn, seq, topic, sess, count, self.peers, now))
            else:
                self._history_out(h.peer_request(conn.peer_dc, seq, sess, count, now))
        elif conn.role != "peer":
            raise ProtocolError(f"unexpected {name} from a client")
        elif typ == FrameType.HISTORY:
            h.peer_frame(conn, sess, bytes(frame))
        else:
            self._history_out(h.peer_end(conn, conn.peer_dc, sess, seq, loads(payload, name), now))

    def _history_out(self, out: list[Out]) -> None:
        for o in out:
            if type(o) is ToClient:
                self._out.append(Reply(o.conn, o.data))
            else:
                self._send_frames(o.peer, [(o.data, BULK_RELIABLE)])

    @staticmethod
    def _check_topic(topic: str, sess: int) -> None:
        if session_id(topic) != sess:
            raise ProtocolError(f"session id {sess:#x} does not match topic {topic!r}")

    # -- holding frames until their table comes ---------------------------------------------------

    def _hold(self, held: dict[int, Pending], sid: int, frame: bytearray, qclass: int,
              source: Conn | None, now: float, owner: Grant | None = None) -> None:
        """Keep a frame that has no route yet: from a local publisher (ingress, `pending`: its
        connection is paused when too many wait) or a peer whose table arrived before ours
        (`transit`: its grant is paid when the frame leaves, so the peer's credit bounds it)."""
        p = held.get(sid)
        if p is None:
            p = held[sid] = Pending(math.inf if held is self.pending else RELIABLE_TRANSIT_WAIT_S)
        before = p.dropped
        p.add(now, frame, qclass, bool(frame_flags(frame) & RELIABLE), source, owner)
        self.counters["pending_overflow"] += p.dropped - before

    def _release_pending(self, sid: int) -> None:
        """The table routes a session whose frames waited at this ingress: send them."""
        p = self.pending.pop(sid)
        picker = self.fwd.ingress[sid]
        sends: dict[str, list[tuple[bytes, int]]] = {}
        for _, frame, qclass, _ in p.drain():
            route = picker.pick(len(frame))
            set_frame_route(frame, route)
            r = self.fwd.routes.get((sid, route))
            if r is None:
                self.counters["no_route"] += 1
                continue
            self._forward_held(sid, route, bytes(frame), qclass, r.resolve(len(frame))[0],
                               None, sends)
        self._send_held(sends)
        self._answer_held(sid, dropped=False)
        p.release()

    def _drop_pending(self, sid: int) -> None:
        """The table says nobody else subscribes to a session whose frames waited here."""
        p = self.pending.pop(sid)
        self.counters["no_subscriber"] += len(p.drain())
        self._answer_held(sid, dropped=True)
        p.release()

    def _answer_held(self, sid: int, dropped: bool) -> None:
        acks: dict[Conn, list[bytes]] = {}
        for conn, seq, origin, here in self._acks_held.pop(sid, ()):
            flags = DROPPED if dropped and not here else 0
            acks.setdefault(conn, []).append(header(FrameType.ACK, sid, seq, flags, 0, origin))
        self._out += [Reply(conn, b"".join(frames)) for conn, frames in acks.items()]

    def _release_transit(self, sid: int, now: float) -> None:
        p = self.transit[sid]
        kept = Pending(RELIABLE_TRANSIT_WAIT_S)
        sends: dict[str, list[tuple[bytes, int]]] = {}
        for t, frame, qclass, owner in p.drain():
            route = frame_route(frame)
            r = self.fwd.routes.get((sid, route))
            if r is None:
                kept.frames.append((t, frame, qclass, owner))
                kept.bytes += len(frame)
                continue
            peers, here = r.resolve(len(frame))
            if here:  # paid once both the local copy and the forwarded ones have left
                pay = None if owner is None else Copies(owner, 2)
                _, origin, seq = frame_ids(frame)
                self._deliver_local(frame, [(sid, origin, seq, 0, len(frame), qclass, owner, pay)],
                                    None, now)
                owner = pay
            self._forward_held(sid, route, bytes(frame), qclass, peers, owner, sends)
        self._send_held(sends)
        if kept.frames:
            kept.blocked = p.blocked
            self.transit[sid] = kept
        else:
            p.release()
            del self.transit[sid]

    def _send_held(self, sends: dict[str, list[tuple[bytes, int]]]) -> None:
        for name, frames in sends.items():
            self._send_frames(name, frames)

    # -- the table --------------------------------------------------------------------------------

    def controller_connected(self) -> None:
        """A (new) control connection: its table versions start afresh."""
        self._control_version = -1

    def install(self, table, peers: Mapping[str, str], now: float) -> list[Action]:
        """A table push from the controller (`peers`: the live relays' addresses)."""
        if table.version <= self._control_version:
            return []
        self._control_version = table.version
        try:
            fwd = compile_table(table)
        except ValueError as e:
            log.warning("relay %s: rejected table v%d: %s", self.dc, table.version, e)
            return []
        self._retire_routes(fwd, table.version, now)
        self.fwd = fwd
        self._size_windows(table)
        if self._known_relays - set(peers):
            # a relay left the overlay: frames it held are gone, so gaps are losses now, unless
            # their publishers send them again (told at the next tick, on the new routes)
            self._relay_lost_at = now
            if self.acks.enabled:
                self.acks.resend_at = now
        self.acks.peers_changed(set(peers))
        self._known_relays = set(peers)
        if self.patterns:  # topics new to this relay, for its pattern subscribers
            self._bind_patterns(fwd.topics.values())
        wanted = {n: a for n, a in {**self.static_peers, **peers}.items() if n != self.dc}
        self.peers = set(wanted)
        self._out.append(PeersChanged(wanted))
        log.info("relay %s: table v%d, %d entries, next hops %s", self.dc, fwd.version,
                 len(fwd.routes), sorted(fwd.next_hops))
        for sid in list(self.pending):
            if sid in fwd.ingress:
                self._release_pending(sid)
            elif sid in fwd.unrouted:
                self._drop_pending(sid)
        for sid in list(self.transit):
            self._release_transit(sid, now)
        return self._take()

    def _size_windows(self, table) -> None:
        """Windows from the table's planned rates and the measured RTTs (`credit.window_bytes`)."""
        self._rates = {(session_id(t), r): v for (t, r), v in getattr(table, "rates", {}).items()}
        for peer, grants in self._grants.items():
            rtt = self._rtt_ms.get(peer)
            for key, g in grants.items():
                w = window_bytes(self._rates.get(key), rtt)
                if w != g.window:
                    g.resize(w)

    def _forget_credit(self) -> None:
        """Credit state of routes no table names any more, once nothing waits on it."""
        routes = self.fwd.routes
        for key in [k for k, c in self.credits.items()
                    if (k[1], k[2]) not in routes and not c.waiting]:
            del self.credits[key]
        for grants in self._grants.values():
            for key in [k for k, g in grants.items() if k not in routes and not g.holds]:
                del grants[key]
        live = {sid for sid, _ in routes} | set(self.sessions)
        for sid in [sid for sid in self._valves if sid not in live]:
            del self._valves[sid]

    def _retire_routes(self, fwd: Forwarding, version: int, now: float) -> None:
        """Keep the routes the new table drops for RETIRED_ROUTE_KEEP_S, so frames already sent
        on them finish them; the controller names no other route by their ids meanwhile.

        A relay that missed a table (it was cut off, or the controller restarted) cannot know
        what its old ids mean now, and keeps nothing."""
        if version == self.fwd.version + 1:
            until = now + RETIRED_ROUTE_KEEP_S
            for key, route in self._current_routes.items():
                if key not in fwd.routes:
                    self._retired[key] = (until, route)
        else:
            self._retired.clear()
        for key in fwd.routes:
            self._retired.pop(key, None)
        self._current_routes = dict(fwd.routes)
        fwd.routes = self._merged_routes()

    def _merged_routes(self) -> dict[tuple[int, int], Route]:
        """The current table's routes over the retired ones still kept."""
        return {**{k: r for k, (_, r) in self._retired.items()}, **self._current_routes}

    # -- the same decisions, asked in bulk (the simulator's fluid model) ---------------------------

    def planned(self, topic: str) -> bool:
        """Whether the table says what to do with `topic`'s frames published here: route them,
        or (nobody else subscribes) nothing. Until then the data path holds them."""
        sid = session_id(topic)
        return sid in self.fwd.ingress or sid in self.fwd.unrouted

    def ingress_shares(self, topic: str) -> list[tuple[int, float]]:
        """The routes new frames of `topic` published here take, with their byte shares."""
        picker = self.fwd.ingress.get(session_id(topic))
        return picker.weights if picker is not None else []

    def branches(self, topic: str, route: int) -> tuple[list[tuple[str, float]], bool] | None:
        """What this relay does with a frame of (`topic`, `route`): `Route.branches`, from the
        current table or a retired route still kept; None drops it (a table in transit)."""
        r = self.fwd.routes.get((session_id(topic), route))
        return None if r is None else r.branches()

    # -- local delivery and order ------------------------------------------------------------------

    def _deliver_local(self, buf: bytes | bytearray,
                       items: list[tuple[int, int, int, int, int, int, Any, Any]],
                       source: Conn | None, now: float) -> None:
        """Frames for this relay's subscribers, in sequence order per (session, publisher).
        Each item names what brought it (`via`: the grant of a peer's reliable frame, else the
        connection) and whom its delivery pays (`pay`: that grant, or `Copies` of it; None for
        a client's frame or a live one). A paid-for frame is paid when it leaves in order (or is
        dropped), so a reorder gap holds at most the upstream's window of it: such frames are
        never skipped for lack of room, only when the gap times out. A client's reliable frames
        that run far ahead of a gap hold back reading of their connection instead."""
        out: dict[int, list] = {}
        classes: dict[int, int] = {}
        sessions, reorder = self.sessions, self.reorder
        for sid, origin, seq, a, b, qclass, via, pay in items:
            s = sessions.get(sid)
            if s is None or not s.subscribers:
                self.counters["no_subscriber"] += 1
                if pay is not None:
                    pay.sent(b - a)
                continue
            st = reorder.get((sid, origin))
            if st is None:
                st = reorder[(sid, origin)] = Reorder(seq, qclass in RELIABLE_CLASSES)
            lst = out.get(sid)
            if lst is None:
                lst = out[sid] = []
                classes[sid] = qclass
            if st.paused and via not in st.paused:
                st.free_arrival = now
            if pay is None and via is not None and (st.held or seq > st.next):
                st.saw(via, seq)
            if seq == st.next:
                st.next = seq + 1
                st.started = True
                if pay is not None:
                    pay.sent(b - a)
                last = lst[-1] if lst else None
                if type(last) is list and last[1] == a:
                    last[1] = b
                    last[2] += 1
                else:
                    lst.append([a, b, 1])
                if st.held:
                    st.release(lst)
                    if st.held:  # a later gap is open from now on
                        st.since = now
                    st.moved()
            elif seq > st.next:
                self.counters["held_out_of_order"] += 1
                if not st.hold(seq, bytes(memoryview(buf)[a:b]), now, pay):
                    self.counters["late_frames"] += 1  # a duplicate of a held frame
                elif st.overfull and pay is None:
                    paused = len(st.paused)
                    if st.overflow(via, seq, now):
                        self.counters["reorder_paused"] += len(st.paused) - paused
                    else:
                        before = st.skipped
                        st.skip(lst, now)
                        self.counters["reorder_overflows"] += 1
                        self._gave_up(sid, st, before, f"{st.held_bytes} bytes held")
            else:
                st.late += 1
                self.counters["late_frames"] += 1
                if pay is not None:
                    pay.sent(b - a)
        view = memoryview(buf)
        for sid, lst in out.items():
            chunks = [(view[x[0]:x[1]], x[2]) if type(x) is list else (x, 1) for x in lst]
            if len(chunks) > 1 and sum(len(c) for c, _ in chunks) < COALESCE_PIECE_BYTES * len(chunks):
                # Many small pieces (frames released from a reorder gap between runs): one
                # copy into one write costs less than a syscall per piece.
                chunks = [(b"".join(c for c, _ in chunks), sum(n for _, n in chunks))]
            self._to_subscribers(sid, chunks, classes[sid], source, now)

    def _to_subscribers(self, sid: int, chunks: list[tuple[bytes | memoryview, int]], qclass: int,
                        source: Conn | None, now: float) -> None:
        s = self.sessions.get(sid)
        if s is None or not s.subscribers or not chunks:
            return
        if self.history.active:
            self.history.delivered(s.topic, sid, chunks, now)
        if len(s.subscribers) > 1:  # a view must not outlive the call; copy once for many
            chunks = [(bytes(c) if type(c) is memoryview else c, n) for c, n in chunks]
        self._out.append(Deliver(list(s.subscribers), chunks, qclass, source))

    def _gave_up(self, sid: int, st: Reorder, before: int, why: str) -> None:
        """Count the frames a skipped gap cost; a reliable session's loss is worth a warning."""
        self.counters["reorder_skipped"] += st.skipped - before
        if st.reliable:
            log.warning("relay %s: session %#x gave up %d frames of a reliable stream (%s)",
                        self.dc, sid, st.skipped - before, why)

    # -- timers -------------------------------------------------------------------------------------

    def tick(self, now: float, backlogged: Iterable[Conn] = ()) -> list[Action]:
        """Time passed: retired routes expire, held frames age, reorder gaps are judged, departed
        publishers are withdrawn. `backlogged`: client connections whose output waits (a slow
        subscriber, whose reliable gaps must not time out while it is the bottleneck)."""
        self._expire_routes(now)
        self._expire_held(now)
        if self.auth is not None:
            for conn, reason, counter in self.auth.due(now):
                self.counters[counter] += 1
                self._out.append(Close(conn, reason))
        self._judge_gaps(now, set(backlogged))
        if self._backlogged:
            self._cut_slow_subscribers(now)
        if self._lingering:
            due = [sid for at, sid in self._lingering if at <= now]
            self._lingering = [(at, sid) for at, sid in self._lingering if at > now]
            for sid in due:
                self._publisher_gone(sid)
        if self.history.queries:
            self._history_out(self.history.tick(now))
        if self._subscriber_linger:
            due = [(c, sid) for at, c, sid in self._subscriber_linger if at <= now]
            self._subscriber_linger = [x for x in self._subscriber_linger if x[0] > now]
            for c, sid in due:
                self._unsubscribe(c, sid)
        if self.acks.enabled:
            self._acks_tick(now)
        return self._take()

    def _acks_tick(self, now: float) -> None:
        """Announce what this relay delivered; tell publishing clients what the overlay did."""
        sessions = self.sessions
        frames = self.acks.announce(now, [sid for sid, s in sessions.items() if s.subscribers],
                                    self.reorder)
        if frames:
            for p in sorted(self.peers):
                self._out.append(SendFrames(p, [(frames, DS_RELIABLE)]))
        resend = self.acks.resend_due(now)
        for conn in self._publishing:
            out = [f for key, accepted in conn.accepted.items()
                   if (f := self._acknowledge(conn, key, accepted, now))]
            if resend:
                out += [told_frame(key & 0xFFFFFFFF, key >> 32, conn.told.get(key, 0), resend=True)
                        for key in conn.accepted]
            if out:
                self._out.append(Reply(conn, b"".join(out)))

    def _tell(self, key: int, now: float) -> None:
        """An egress's DELIVERED moved (session | origin << 32): tell its publisher at once."""
        for conn in self._publishing:
            accepted = conn.accepted.get(key)
            if accepted is not None and (f := self._acknowledge(conn, key, accepted, now)):
                self._out.append(Reply(conn, f))

    def _acknowledge(self, conn: Conn, key: int, accepted: int, now: float) -> bytes:
        """The DELIVERED that client `conn` is owed for `key`, or b"" (nothing new)."""
        sid, origin = key & 0xFFFFFFFF, key >> 32
        s = self.sessions.get(sid)
        local = None
        if s is not None and s.subscribers:
            st = self.reorder.get((sid, origin))
            local = st.next if st is not None else 0
        ack = self.acks.acknowledged(sid, origin, accepted, local, sid in self.fwd.unrouted, now)
        if ack is None or ack <= conn.told.get(key, 0):
            return b""
        conn.told[key] = ack
        return told_frame(sid, origin, ack)

    def _expire_routes(self, now: float) -> None:
        expired = [k for k, (until, _) in self._retired.items() if until <= now]
        if expired:
            for key in expired:
                del self._retired[key]
            self.fwd.routes = self._merged_routes()
            self._forget_credit()

    def _expire_held(self, now: float) -> None:
        for name, held in (("pending_expired", self.pending), ("transit_expired", self.transit)):
            for sid, p in list(held.items()):
                before, reliable_before = p.dropped, p.dropped_reliable
                p.expire(now)
                self.counters[name] += p.dropped - before
                if p.dropped_reliable > reliable_before:
                    log.warning("relay %s: session %#x: %d reliable frames waited %s s for a route "
                                "that never came", self.dc, sid, p.dropped_reliable - reliable_before,
                                p.reliable_wait_s)
                if not p.frames:
                    p.release()
                    del held[sid]

    def _judge_gaps(self, now: float, backlogged: set[Conn]) -> None:
        if len(self.reorder) > REORDER_STATES_MAX:
            self.reorder = {k: st for k, st in self.reorder.items() if st.held or st.paused}
        relay_lost = now - self._relay_lost_at < RELAY_LOST_WINDOW_S
        for (sid, _), st in self.reorder.items():
            if not st.held:
                continue
            if st.reliable and not relay_lost and self._subscribers_behind(sid, backlogged):
                # The subscriber is the bottleneck, and the missing frames may be queued behind
                # the backpressure it causes: the gap's clock runs only while it keeps up.
                st.since = now
                continue
            if st.stalled(now):
                self.counters["reorder_pause_stalled"] += 1
            if now - st.since > REORDER_CREDIT_STALL_S and st.pay_held():
                self.counters["reorder_credit_released"] += 1
            # With acknowledgements, what a lost relay held is sent again by its publisher.
            lost_s = RELAY_LOST_GAP_S if st.reliable and self.acks.enabled else REORDER_TIMEOUT_S
            timeout_s = (REORDER_START_TIMEOUT_S if st.reliable and not st.started
                         and not relay_lost else lost_s if relay_lost else st.timeout_s)
            if now - st.since > timeout_s:
                out: list = []
                before = st.skipped
                if not st.started and not relay_lost:
                    # Joined mid-stream: what came before the first frame was never ours.
                    st.started = True
                    st.skip(out, now)
                    self.counters["joined_mid_stream"] += 1
                    before = st.skipped
                else:
                    st.expire(out, now, timeout_s)
                if st.skipped > before:
                    self._gave_up(sid, st, before,
                                  "a relay left" if relay_lost else f"a gap outlived {timeout_s} s")
                if out:
                    self._to_subscribers(sid, [(f, 1) for f in out], queue_class(frame_flags(out[0])),
                                         None, now)

    def _subscribers_behind(self, sid: int, backlogged: set[Conn]) -> bool:
        s = self.sessions.get(sid)
        return s is not None and any(c in backlogged for c in s.subscribers)

    # -- local sessions -------------------------------------------------------------------------------

    def _session(self, topic: str) -> LocalSession:
        sid = session_id(topic)
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = LocalSession(topic, sid)
        return s

    def _subscribe(self, conn: Conn, topic: str) -> None:
        if is_pattern(topic):
            sid = session_id(topic)
            if self.patterns.add(conn, topic, sid):
                conn.patterns.add(sid)
                self._bind_patterns(self._known_topics(), topic)
                self._out.append(InterestChanged())
            return
        s = self._session(topic)
        if conn not in s.direct:
            s.direct.append(conn)
            self._rebind(s)
            self._out.append(InterestChanged())

    def _unsubscribe(self, conn: Conn, sid: int) -> None:
        if sid in conn.patterns:
            conn.patterns.discard(sid)
            pattern = self.patterns.remove(conn, sid)
            if pattern is not None:
                self._bind_patterns([s.topic for s in self.sessions.values()], pattern)
                self._out.append(InterestChanged())
            return
        s = self.sessions.get(sid)
        if s is None:
            conn.subscribed.discard(sid)
        elif conn in s.direct:  # (if a pattern covers the topic too, it stays bound by that)
            s.direct.remove(conn)
            self._rebind(s)
            self._out.append(InterestChanged())

    # -- pattern subscriptions (`patterns.py`) ------------------------------------------------------

    def _known_topics(self) -> list[str]:
        """The topics this relay has heard of: its table's and its local sessions'."""
        return list(dict.fromkeys([*self.fwd.topics.values(),
                                   *(s.topic for s in self.sessions.values())]))

    def _bind_patterns(self, topics: Iterable[str], pattern: str | None = None) -> None:
        """Deliver each of `topics` (that `pattern` covers, if given) to the connections whose
        pattern subscriptions cover it now, and no longer to those whose do not."""
        for topic in topics:
            if is_pattern(topic) or pattern is not None and not matches(pattern, topic):
                continue
            s = self.sessions.get(session_id(topic))
            if s is None:
                if not self.patterns.covering(topic):
                    continue
                s = self._session(topic)
            self._rebind(s)

    def _rebind(self, s: LocalSession) -> None:
        """Recompute whom `s` is delivered to (`LocalSession.subscribers`). A connection bound
        by a pattern is first told the topic's name (TOPIC): its frames name only the session id."""
        want = list(s.direct)
        if self.patterns:
            want += [c for c in self.patterns.covering(s.topic) if c not in want]
        for c in s.subscribers:
            if c not in want:
                c.subscribed.discard(s.sid)
        for c in want:
            if s.sid not in c.subscribed:
                c.subscribed.add(s.sid)
            if c not in s.direct and s.sid not in c.named:
                c.named.add(s.sid)
                self._out.append(Reply(c, encode(FrameType.TOPIC, s.topic.encode(),
                                                 session=s.sid)))
        had = bool(s.subscribers)
        s.subscribers = want
        if had and not want:
            self.history.idle(s.sid)
        self._forget_if_idle(s)

    def _advertise(self, conn: Conn, topic: str, flags: int, options: Mapping[str, float]) -> None:
        s = self._session(topic)
        if s.sid not in conn.advertised:
            conn.advertised[s.sid] = (topic, flags)
            if flags & RELIABLE and self.acks.enabled:
                self._publishing.add(conn)
            s.add_publisher(flags, options.get("max_rate_mbps"), options.get("latency_budget_ms"))
            if self.patterns and s.publishers == 1:  # local subscribers of a covering pattern
                self._rebind(s)
            self._out.append(InterestChanged())

    def _unadvertise(self, conn: Conn, sid: int, at: float) -> None:
        """Withdraw a publisher at `at` (now, or after a linger for its last frames)."""
        if conn.advertised.pop(sid, None) is None:
            return
        self._lingering.append((at, sid))

    def _publisher_gone(self, sid: int) -> None:
        s = self.sessions.get(sid)
        if s is not None and s.publishers:
            s.publishers -= 1
            if not s.publishers:
                self.acks.forget(sid)
            self._forget_if_idle(s)
            self._out.append(InterestChanged())

    def _forget_if_idle(self, s: LocalSession) -> None:
        if s.idle:
            del self.sessions[s.sid]
            for key in [k for k in self.reorder if k[0] == s.sid]:
                self.reorder.pop(key).drop()

    # -- reports ------------------------------------------------------------------------------------

    def report(self, links: list[dict] | None = None) -> dict:
        """The body of a REPORT: interest always; with `links`, measurements, counters and the
        table version too (the controller parses it: `stemflow.controller.Report`)."""
        body: dict = {"interest": [s.interest() for s in self.sessions.values() if s.reported]
                      + self.patterns.report()}
        if links is not None:
            body["links"] = links
            body["counters"] = dict(self.counters)
            body["table_version"] = self.fwd.version
        return body

    def state(self) -> dict:
        """Where frames wait and what is paused (the shell adds its queues)."""
        def conn(c: Conn | Grant) -> str:
            if isinstance(c, Grant):
                return f"credit:{c.peer}/{c.route}"
            return f"{c.role}:{c.peer_dc or '-'}#{id(c) % 10000}"
        return {
            "counters": dict(self.counters),
            "table_version": self.fwd.version, "routes": len(self.fwd.routes),
            "retired_routes": len(self._retired),
            "credit_waiting": {f"{p}/{sid:#x}/{r}": c.waiting_bytes
                               for (p, sid, r), c in self.credits.items() if c.waiting},
            "grants_held": [f"{g.peer}/{g.sid:#x}/{g.route}" for gs in self._grants.values()
                            for g in gs.values() if g.holds or g.valve.holds],
            "reorder": [{"session": f"{sid:#x}", "origin": origin, "next": st.next,
                         "held": len(st.held), "held_bytes": st.held_bytes,
                         "lowest": min(st.held) if st.held else None, "no_pause": st.no_pause,
                         "paused": {conn(c): r.lowest if (r := st.recent.get(c)) else None
                                    for c in st.paused}}
                        for (sid, origin), st in self.reorder.items() if st.held or st.paused],
            "pending": {f"{k:#x}": p.bytes for k, p in self.pending.items()},
            "transit": {f"{k:#x}": p.bytes for k, p in self.transit.items()},
            "sizes": self.sizes(),
        }

    def sizes(self) -> dict[str, int]:
        """How many entries each table of per-session, per-route and per-connection state holds:
        what would grow if something were never forgotten (`benchmarks/soak.py` watches them)."""
        return {
            "sessions": len(self.sessions), "reorder": len(self.reorder),
            "reorder_held": sum(len(st.held) for st in self.reorder.values()),
            "reorder_recent": sum(len(st.recent) for st in self.reorder.values()),
            "routes": len(self.fwd.routes), "retired": len(self._retired),
            "credits": len(self.credits), "grants": sum(len(g) for g in self._grants.values()),
            "peer_conns": sum(len(c) for c in self._peer_conns.values()),
            "valves": len(self._valves), "rates": len(self._rates),
            "publishing": len(self._publishing),
            "accepted": sum(len(c.accepted) + len(c.told) for c in self._publishing),
            "lingering": len(self._lingering), "subscriber_linger": len(self._subscriber_linger),
            "acks_held": sum(len(v) for v in self._acks_held.values()),
            **self.acks.sizes(),
            "history_stores": len(self.history.stores), "history_bytes": self.history.bytes,
            "history_queries": len(self.history.queries), "pending": len(self.pending),
            "transit": len(self.transit), "backlogged": len(self._backlogged),
        }
