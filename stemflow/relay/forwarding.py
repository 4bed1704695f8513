"""A controller table, compiled for the data path: per (session id, route) what to do with a frame.

Owns the compilation of a `RelayTable` (topics, entries, ingress weights) into dictionaries keyed
by the wire's session id, and the deterministic weighted picker behind `Split` entries and the
ingress route choice. Which frames arrive and where the bytes go is the server's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stemflow.protocol import session_id
from stemflow.routing.plan import LOCAL, RelayTable, Replicate

T = TypeVar("T")


class WeightedPicker(Generic[T]):
    """Byte-weighted, deterministic choice (self-clocked fair queueing's virtual finish times).

    Each option advances its own clock by size/weight when it carries a frame; the next frame
    goes to the option that would finish first. Over any run of frames the bytes per option
    follow the weights to within one frame, with no randomness.
    """

    __slots__ = ("options", "_inv", "_clock", "only")

    def __init__(self, weighted: Sequence[tuple[T, float]]):
        kept = [(o, w) for o, w in weighted if w > 0]
        if not kept:
            raise ValueError("a weighted choice needs an option with positive weight")
        self.options = [o for o, _ in kept]
        total = sum(w for _, w in kept)
        self._inv = [total / w for _, w in kept]
        self._clock = [0.0] * len(kept)
        self.only: T | None = self.options[0] if len(kept) == 1 else None
        """The one option, when there is one (the data path then skips `pick`)."""

    @property
    def weights(self) -> list[tuple[T, float]]:
        """The options with their shares (summing to 1)."""
        return [(o, 1.0 / inv) for o, inv in zip(self.options, self._inv, strict=True)]

    def pick(self, size: int) -> T:
        clock, inv = self._clock, self._inv
        if len(clock) == 1:
            return self.options[0]
        best, best_t = 0, clock[0] + size * inv[0]
        for i in range(1, len(clock)):
            t = clock[i] + size * inv[i]
            if t < best_t:
                best, best_t = i, t
        clock[best] = best_t
        base = min(clock)
        if base > 1e15:  # keep the clocks' float precision: shift them all together
            self._clock = [c - base for c in clock]
        return self.options[best]


NO_PEERS: tuple[str, ...] = ()


@dataclass
class Route:
    """One (session, route) entry: fixed next hops (Replicate) or a weighted pick (Split)."""

    peers: tuple[str, ...] = NO_PEERS
    local: bool = False
    split: WeightedPicker[str] | None = None
    credits: dict[str, Any] = field(default_factory=dict)
    """Per next hop, this relay's `credit.Credit` for the route there (the relay's data path
    reads it here: one lookup by peer name instead of one by (peer, session, route))."""

    def branches(self) -> tuple[list[tuple[str, float]], bool]:
        """Where this entry sends frames: (next hop or LOCAL, share) pairs, and whether they are
        shares of a split (True) or copies (False, every branch gets every frame)."""
        if self.split is not None:
            return self.split.weights, True
        return [(h, 1.0) for h in self.peers] + ([(LOCAL, 1.0)] if self.local else []), False

    def resolve(self, size: int) -> tuple[tuple[str, ...], bool]:
        """(peer next hops, deliver locally?) for a frame of `size` bytes."""
        if self.split is None:
            return self.peers, self.local
        hop = self.split.pick(size)
        return ((), True) if hop == LOCAL else ((hop,), False)


@dataclass
class Forwarding:
    """The relay's compiled table; an empty one forwards nothing."""

    version: int = -1
    routes: dict[tuple[int, int], Route] = field(default_factory=dict)
    ingress: dict[int, WeightedPicker[int]] = field(default_factory=dict)
    topics: dict[int, str] = field(default_factory=dict)
    unrouted: set[int] = field(default_factory=set)
    """Sessions published here that nobody at another relay subscribes to: their frames have
    nowhere to go (local subscribers aside), so they are not held for a route."""

    @property
    def next_hops(self) -> set[str]:
        hops: set[str] = set()
        for r in self.routes.values():
            hops.update(r.peers)
            if r.split is not None:
                hops.update(h for h in r.split.options if h != LOCAL)
        return hops


def compile_table(table: RelayTable) -> Forwarding:
    routes: dict[tuple[int, int], Route] = {}
    topics: dict[int, str] = {}
    for (topic, route), entry in table.entries.items():
        sid = session_id(topic)
        topics[sid] = topic
        if isinstance(entry, Replicate):
            routes[(sid, route)] = Route(tuple(h for h in entry.next_hops if h != LOCAL),
                                         LOCAL in entry.next_hops)
        elif len(entry.next_hops) == 1:  # a split with one branch is a plain next hop
            hop = entry.next_hops[0]
            routes[(sid, route)] = Route(() if hop == LOCAL else (hop,), hop == LOCAL)
        else:
            routes[(sid, route)] = Route(split=WeightedPicker(entry.weights))
    ingress = {}
    unrouted = set()
    for topic, weights in table.ingress.items():
        sid = session_id(topic)
        topics[sid] = topic
        if any(w > 0 for _, w in weights):
            ingress[sid] = WeightedPicker(weights)
        else:
            unrouted.add(sid)
    return Forwarding(table.version, routes, ingress, topics, unrouted)
