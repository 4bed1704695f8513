"""Pattern subscriptions at one relay (`chat.*`, `video.>`): who asked for which pattern.

A pattern is never a session: nobody publishes on it, and no frame carries its session id. The
relay reports it to the controller as interest of its own (`report`), the controller counts this
relay as a subscriber of every published topic the pattern covers (`controller._with_patterns`),
and the relay delivers each such topic to the pattern's connections as if they had subscribed to
it: `covering` says which connections those are, for the topics the relay learns of (from its
table or a local publisher). Matching follows NATS (`stemflow.subjects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stemflow.subjects import matches


@dataclass
class PatternSubscription:
    """One pattern at this relay and the connections subscribed to it, in arrival order."""

    pattern: str
    conns: list[Any] = field(default_factory=list)


class PatternSubscriptions:
    """The relay's pattern subscriptions, by the pattern's session id (as SUBSCRIBE names it)."""

    def __init__(self) -> None:
        self.by_sid: dict[int, PatternSubscription] = {}

    def __bool__(self) -> bool:
        return bool(self.by_sid)

    def add(self, conn: Any, pattern: str, sid: int) -> bool:
        """`conn` subscribes to `pattern`; False if it already did."""
        p = self.by_sid.setdefault(sid, PatternSubscription(pattern))
        if conn in p.conns:
            return False
        p.conns.append(conn)
        return True

    def remove(self, conn: Any, sid: int) -> str | None:
        """`conn` leaves the pattern of `sid`; returns the pattern, or None if it had not asked."""
        p = self.by_sid.get(sid)
        if p is None or conn not in p.conns:
            return None
        p.conns.remove(conn)
        if not p.conns:
            del self.by_sid[sid]
        return p.pattern

    def covering(self, topic: str) -> list[Any]:
        """The connections a pattern of which covers `topic`, each once, first-come first."""
        out: list[Any] = []
        for p in self.by_sid.values():
            if matches(p.pattern, topic):
                out += [c for c in p.conns if c not in out]
        return out

    def report(self) -> list[dict]:
        """Interest items, in the vocabulary of `LocalSession.interest`: subscribers only."""
        return [{"topic": p.pattern, "publishers": 0, "subscribers": len(p.conns),
                 "priority": "bulk"} for p in self.by_sid.values()]
