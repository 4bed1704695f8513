"""Topic history at a relay, sans-IO: what this relay delivered, kept per topic, and the answers.

Owns the rules (`stemflow relay --history PATTERN=COUNT[/SECONDS]`), one store per kept topic
(the last COUNT messages this relay delivered to its own subscribers, none older than SECONDS,
at most `STORE_BYTES`), and history requests: a subscriber's request is answered from this
relay's store when the store holds all its rule keeps (`Store.complete`); otherwise the relay
asks its peers (`Query`) and answers from the best store among theirs and its own. What a frame
is, where the bytes go and when is the core's (`core.py`); this module neither reads a clock
nor touches a socket: the core passes the time in and turns `ToClient` / `ToPeer` into actions.

Why stores live where messages are delivered: every relay that delivers a topic holds the
topic's recent past already, in order as its subscribers saw it, so a subscriber there is
answered locally (no wide-area round trip on joining a room), and a topic's history survives as
long as one relay that delivered it does. See docs/relays.md, "Topic history".
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stemflow.protocol import (
    FrameType,
    ProtocolError,
    encode,
    frame_spans,
    history_end_payload,
    history_request_payload,
    retyped,
)
from stemflow.subjects import matches, validate_pattern

HISTORY = int(FrameType.HISTORY)
HISTORY_REQUEST = int(FrameType.HISTORY_REQUEST)
HISTORY_END = int(FrameType.HISTORY_END)

MAX_HISTORY_COUNT = 10_000
"""Most messages one rule may keep per topic: a hundred times a chat's "last 100", and a bound
on what one request can make a relay send."""
STORE_BYTES = 64 << 20
"""Bytes one topic's store may hold, whatever its rule: six of the messaging app's largest
files (10 MB) with the text around them. Oldest messages go first past it."""
TOTAL_BYTES = 512 << 20
"""Bytes all stores of one relay may hold: past it, the oldest message of any store goes first
(`history_evicted`), so many busy topics cannot exhaust a relay's memory."""
MAX_KEPT_TOPICS = 4096
"""Topics one relay keeps history of; past it, new topics are not kept (`history_topics_full`),
so a client inventing topic names cannot grow the relay's memory without bound."""
QUERY_TIMEOUT_S = 2.0
"""How long a relay waits for its peers' answers before answering from the best it has: one
wide-area round trip (300 ms at most in our scenarios) plus a few MB of answer, with room; a
dead peer costs a joining subscriber this much once."""


class HistoryError(ValueError):
    """A malformed `--history` rule; the message says which and what was expected."""


@dataclass(frozen=True)
class Rule:
    """Keep the last `count` messages of topics matching `pattern`, none older than `keep_s`."""

    pattern: str
    count: int
    keep_s: float = math.inf

    @classmethod
    def parse(cls, text: str) -> Rule:
        """From `PATTERN=COUNT` or `PATTERN=COUNT/SECONDS` (e.g. `chat.>=100/3600`, `>=100`)."""
        pattern, sep, keep = text.rpartition("=")
        count_s, _, seconds = keep.partition("/")
        if not sep or not pattern:
            raise HistoryError(f"history rule {text!r}: expected PATTERN=COUNT[/SECONDS], e.g. '>=100/3600'")
        try:
            validate_pattern(pattern)
            count, keep_s = int(count_s), float(seconds) if seconds else math.inf
        except ValueError as e:
            raise HistoryError(f"history rule {text!r}: {e}") from None
        if not 0 < count <= MAX_HISTORY_COUNT or not keep_s > 0:
            raise HistoryError(f"history rule {text!r}: COUNT must be 1..{MAX_HISTORY_COUNT} and "
                               f"SECONDS positive")
        return cls(pattern, count, keep_s)


@dataclass(frozen=True)
class HistoryPolicy:
    """Which topics a relay keeps history of: the first rule whose pattern matches wins."""

    rules: tuple[Rule, ...] = ()
    _cache: dict[str, Rule | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, rules: Iterable[str]) -> HistoryPolicy:
        return cls(tuple(Rule.parse(r) for r in rules))

    def of(self, topic: str) -> Rule | None:
        if topic in self._cache:
            return self._cache[topic]
        rule = next((r for r in self.rules if matches(r.pattern, topic)), None)
        if len(self._cache) < MAX_KEPT_TOPICS:
            self._cache[topic] = rule
        return rule


class Store:
    """One topic's recent messages at this relay, oldest first, each as a HISTORY frame."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.frames: deque[tuple[float, bytes]] = deque()
        self.bytes = 0
        self.began: float | None = None
        """Since when this relay has delivered the topic without a break (None: it does not now)."""
        self.full = False
        """Messages were dropped for the count or byte bound since `began`: the store holds all it
        may hold, so nothing older is missing from it."""

    def add(self, frame: bytes, now: float) -> int:
        """Keep `frame`; returns the change in bytes held."""
        before = self.bytes
        if self.began is None:
            self.began, self.full = now, False
        self.frames.append((now, frame))
        self.bytes += len(frame)
        while len(self.frames) > self.rule.count or self.bytes > STORE_BYTES:
            self.drop_oldest()
            self.full = True
        self.expire(now)
        return self.bytes - before

    def drop_oldest(self) -> int:
        n = len(self.frames.popleft()[1])
        self.bytes -= n
        return n

    def expire(self, now: float) -> None:
        oldest = now - self.rule.keep_s
        q = self.frames
        while q and q[0][0] < oldest:
            self.drop_oldest()

    def interrupted(self) -> None:
        """The relay stopped delivering the topic (its last local subscriber left)."""
        self.began = None

    def covered_s(self, now: float) -> float:
        return 0.0 if self.began is None else now - self.began

    def complete(self, now: float) -> bool:
        """Whether the store holds every message its rule keeps (so no peer can know more)."""
        return self.began is not None and (self.full or self.covered_s(now) >= self.rule.keep_s)

    def last(self, count: int, now: float) -> list[bytes]:
        self.expire(now)
        return [f for _, f in itertools.islice(self.frames, max(0, len(self.frames) - count), None)]


@dataclass(frozen=True, slots=True)
class Answer:
    """One store's reply to a request: its frames, how long it has recorded, whether complete."""

    frames: list[bytes]
    covered_s: float
    complete: bool

    def rank(self) -> tuple[bool, float, int]:
        """Better answers sort last: complete first, then the longest unbroken record, then most."""
        return self.complete, self.covered_s, len(self.frames)


@dataclass(slots=True)
class ToClient:
    """Bytes for a client connection (HISTORY frames and their HISTORY_END)."""

    conn: Any
    data: bytes


@dataclass(slots=True)
class ToPeer:
    """Bytes for a peer relay, sent on this relay's link to it (a request, or an answer)."""

    peer: str
    data: bytes


Out = ToClient | ToPeer


@dataclass
class Query:
    """A request this relay put to its peers, and the clients waiting for its answer."""

    id: int
    sid: int
    started: float
    local: Answer
    waiting: set[str]
    requesters: list[tuple[Any, int, int]]
    """(connection, request id, count) of each client waiting."""
    answers: list[Answer] = field(default_factory=list)
    partial: dict[Any, list[bytes]] = field(default_factory=dict)
    """Per peer connection, the HISTORY frames of an answer whose HISTORY_END has not come."""


def answer_bytes(frames: list[bytes], request_id: int, sid: int, covered_s: float, complete: bool) -> bytes:
    end = encode(HISTORY_END, history_end_payload(len(frames), covered_s, complete), session=sid,
                 seq=request_id)
    return b"".join([*frames, end])


def refusal_bytes(request_id: int, sid: int, reason: str) -> bytes:
    return encode(HISTORY_END, history_end_payload(0, 0.0, False, reason), session=sid, seq=request_id)


class History:
    """A relay's stores and the requests in flight."""

    def __init__(self, policy: HistoryPolicy | None = None, counters: Counter[str] | None = None):
        self.policy = policy or HistoryPolicy()
        self.active = bool(self.policy.rules)
        """False: no rule, nothing to record (the core skips the hook)."""
        self.stores: dict[int, Store] = {}
        self.bytes = 0
        """Held by all stores, as last counted (expiry on reading is counted at the next add)."""
        self.queries: dict[int, Query] = {}
        self._ids = itertools.count(1)
        self.counters = Counter() if counters is None else counters
        """`history_topics_full`, `history_evicted`, `history_late_answers` (the relay's own)."""

    # -- recording --------------------------------------------------------------------------------

    def delivered(self, topic: str, sid: int, chunks: Iterable[tuple[bytes | memoryview, int]],
                  now: float) -> None:
        """Frames the relay is handing to its subscribers of `topic` (runs of whole DATA frames)."""
        store = self.stores.get(sid)
        if store is None:
            rule = self.policy.of(topic)
            if rule is None:
                return
            if len(self.stores) >= MAX_KEPT_TOPICS:
                self.counters["history_topics_full"] += 1
                return
            store = self.stores[sid] = Store(rule)
        for chunk, _ in chunks:
            for a, b in frame_spans(chunk):
                self.bytes += store.add(retyped(chunk[a:b], HISTORY), now)
        if self.bytes > TOTAL_BYTES:
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest messages of all stores until they fit TOTAL_BYTES again."""
        self.bytes = sum(s.bytes for s in self.stores.values())
        while self.bytes > TOTAL_BYTES:
            store = min((s for s in self.stores.values() if s.frames), key=lambda s: s.frames[0][0])
            self.bytes -= store.drop_oldest()
            store.full = True
            self.counters["history_evicted"] += 1

    def idle(self, sid: int) -> None:
        """The relay no longer delivers the topic: its store keeps what it has, marked broken."""
        store = self.stores.get(sid)
        if store is not None:
            store.interrupted()

    def _local(self, sid: int, count: int, now: float) -> Answer:
        store = self.stores.get(sid)
        if store is None:
            return Answer([], 0.0, False)
        return Answer(store.last(count, now), store.covered_s(now), store.complete(now))

    # -- requests ---------------------------------------------------------------------------------

    def request(self, conn: Any, request_id: int, topic: str, sid: int, count: int,
                peers: Iterable[str], now: float) -> list[Out]:
        """A client asks for the topic's last `count` messages."""
        rule = self.policy.of(topic)
        if rule is None:
            return [ToClient(conn, refusal_bytes(request_id, sid, (
                f"this relay keeps no history of topic {topic!r}: relays keep it for the topics "
                "their --history PATTERN=COUNT[/SECONDS] rules name")))]
        count = min(count, rule.count)
        q = self.queries.get(sid)
        if q is not None:
            q.requesters.append((conn, request_id, count))
            return []
        local = self._local(sid, rule.count, now)
        peers = sorted(peers)
        if local.complete or not peers:
            return [ToClient(conn, answer_bytes(local.frames[-count:] if count else [], request_id, sid,
                                                local.covered_s, local.complete))]
        q = self.queries[sid] = Query(next(self._ids), sid, now, local, set(peers),
                                      [(conn, request_id, count)])
        ask = encode(HISTORY_REQUEST, history_request_payload(topic, rule.count), session=sid, seq=q.id)
        return [ToPeer(p, ask) for p in peers]

    def peer_request(self, peer: str, request_id: int, sid: int, count: int, now: float) -> list[Out]:
        """A peer asks what this relay's store holds (answered from it alone, never forwarded)."""
        a = self._local(sid, min(count, MAX_HISTORY_COUNT), now)
        return [ToPeer(peer, answer_bytes(a.frames, request_id, sid, a.covered_s, a.complete))]

    def peer_frame(self, conn: Any, sid: int, frame: bytes) -> None:
        """One HISTORY frame of a peer's answer, on the connection `conn` it came by."""
        q = self.queries.get(sid)
        if q is not None:
            q.partial.setdefault(conn, []).append(frame)

    def peer_end(self, conn: Any, peer: str, sid: int, request_id: int, body: Any,
                 now: float) -> list[Out]:
        """A peer's HISTORY_END: its answer is whole; answer the clients once every peer has."""
        q = self.queries.get(sid)
        frames = q.partial.pop(conn, []) if q is not None else []
        if q is None or request_id != q.id or peer not in q.waiting:
            self.counters["history_late_answers"] += 1
            return []
        if not isinstance(body, dict):
            raise ProtocolError("HISTORY_END: payload is not a JSON object")
        q.waiting.discard(peer)
        if "error" not in body:
            covered = body.get("covered_s", 0.0)
            q.answers.append(Answer(frames, float(covered) if isinstance(covered, int | float) else 0.0,
                                    body.get("complete") is True))
        return self._finish(q) if not q.waiting else []

    def tick(self, now: float) -> list[Out]:
        """Queries whose peers did not all answer in QUERY_TIMEOUT_S are answered with the best."""
        out: list[Out] = []
        for q in [q for q in self.queries.values() if now - q.started > QUERY_TIMEOUT_S]:
            out += self._finish(q)
        return out

    def _finish(self, q: Query) -> list[Out]:
        del self.queries[q.sid]
        best = max([q.local, *q.answers], key=Answer.rank)
        return [ToClient(conn, answer_bytes(best.frames[-count:] if count else [], rid, q.sid,
                                            best.covered_s, best.complete))
                for conn, rid, count in q.requesters]

