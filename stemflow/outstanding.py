"""The publisher's retransmission buffer, sans-IO: reliable messages the overlay has not acknowledged.

Owns what a publishing client keeps of its reliable messages until every relay that delivers
their session has delivered them (DELIVERED from its ingress relay, `stemflow/relay/acks.py`):
the frames themselves, in sequence order per session, and their bytes, which bound how far a
publisher may run ahead of the acknowledgements. The client resends them, unchanged (same
publisher id and sequence numbers, so egress relays drop what they have), when its relay says a
relay on the way was lost, or after it reconnected to another relay. The connection and the
waiting are the client's (`stemflow.client`).
"""

from __future__ import annotations

from collections import deque

OUTSTANDING_MAX_BYTES = 64 << 20
"""Unacknowledged bytes one client may hold before its streams wait for acknowledgements: the
end-to-end window. The loop takes ~0.05 s on loopback (`acks.ANNOUNCE_INTERVAL_S` plus the
path), so 64 MiB allows ~10 Gbit/s; it is also what a relay failure may make the client resend,
and what an egress relay holds at most ahead of the resent gap (`REORDER_MAX_BYTES` x 2)."""


class Outstanding:
    """Per session, the frames (sequence number, bytes) not yet acknowledged, oldest first."""

    __slots__ = ("sessions", "bytes")

    def __init__(self) -> None:
        self.sessions: dict[int, deque[tuple[int, bytes]]] = {}
        self.bytes = 0

    def __bool__(self) -> bool:
        return self.bytes > 0

    def add(self, sid: int, seq: int, frame: bytes) -> None:
        q = self.sessions.get(sid)
        if q is None:
            q = self.sessions[sid] = deque()
        q.append((seq, frame))
        self.bytes += len(frame)

    def acknowledged(self, sid: int, below: int) -> int:
        """Every message of `sid` numbered below `below` was delivered: forget them. Returns the
        bytes freed."""
        q = self.sessions.get(sid)
        freed = 0
        while q and q[0][0] < below:
            freed += len(q.popleft()[1])
        self.bytes -= freed
        return freed

    def frames(self, sid: int) -> list[bytes]:
        """What to send again of `sid`, in order."""
        return [f for _, f in self.sessions.get(sid, ())]

    def last_seq(self, sid: int) -> int | None:
        """The newest unacknowledged message of `sid`, if any."""
        q = self.sessions.get(sid)
        return q[-1][0] if q else None
