"""End-to-end acknowledgements of reliable sessions at one relay, sans-IO.

Owns both ends of the loop that lets a publisher forget a reliable message only once every relay
that delivers its session has handed it to subscribers:

- **as an egress** (the relay has subscribers of a session): which (session, publisher) states
  moved since they were last announced, and the DELIVERED frames that tell every peer relay
  "every seq below N of this publisher has been delivered here" (cumulative, so a lost or late
  frame costs nothing the next one does not repair), plus a membership announcement per session
  (`Flag.EGRESS`; with `Flag.GONE` when its last subscriber leaves);
- **as an ingress** (the relay has publishing clients): which relays deliver each of its
  sessions, how far each has delivered each publisher, and so the overlay's acknowledgement of a
  client's messages: the minimum over the egress relays (and this relay's own subscribers), or
  everything the relay accepted when nobody anywhere subscribes; and when to tell clients to
  send again what is not acknowledged (`Flag.RESEND`: a relay on the way was lost).

The retransmission buffer is the publishing client's (`stemflow.outstanding`), not the ingress
relay's: the client holds every reliable message it built until it is acknowledged anyway
(its ingress relay may die), so a second copy at the relay would only cost a copy of every
reliable frame on the relay's data path, which forwards frames as ranges of its receive buffer.
Egress relays drop the copies a resend brings by (session, publisher, seq): `sessions.Reorder`.
What a frame is and where bytes go is the core's (`core.py`); this module reads no clock (the
time is passed in) and touches no socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stemflow.protocol import Flag, FrameType, header

DELIVERED = int(FrameType.DELIVERED)
EGRESS = int(Flag.EGRESS)
GONE = int(Flag.GONE)
RESEND = int(Flag.RESEND)

ANNOUNCE_INTERVAL_S = 0.05
"""An egress announces what moved at most this often: the relay's sweep. The ingress tells its
publisher as soon as an announcement moves the minimum, so the acknowledgement loop takes up to
one interval plus the path (~0.05 s on loopback); with the client's `OUTSTANDING_MAX_BYTES`
(64 MiB) that allows ~10 Gbit/s per publisher, above what one relay forwards on our 2-core
machine. What the publisher keeps meanwhile is what acknowledgements cost it (memory it cannot
reuse while it waits); one 24-byte frame per moving (session, publisher) per peer per interval
costs the relays nothing measurable next to the data."""
KEEPALIVE_S = 1.0
"""Every state and membership is announced again this often, moved or not: a DELIVERED frame
lost with a peer connection is repaired within a second, and a relay that starts publishing a
session learns its egress relays within a second."""
EGRESS_SILENT_S = 3.0 * KEEPALIVE_S
"""An egress relay not heard from for three keepalives no longer counts for the minimum (it
lost its subscribers without a GONE reaching us, or it is cut off); a relay that leaves the
overlay stops counting at once (`peers_changed`)."""
RESEND_SETTLE_S = 0.2
"""After a peer connection was lost, clients are told to resend this late, once: a relay that
died takes its P+1 connections down one after another, and the controller's new table (which
triggers a resend at once) usually comes within this."""
RELAY_LOST_GAP_S = 5.0
"""With acknowledgements on, a reliable gap opened by a relay that left waits this long (not the
live 0.3 s): the publisher resends what the dead relay held once its ingress installs the new
table, or once it reconnected to another relay and that relay was planned (a report interval and
a plan, ~1 s on loopback). Past it, the publisher is taken to have died too."""


class EgressView:
    """What one egress relay told us about one session: per publisher, the next seq it lacks."""

    __slots__ = ("heard", "next")

    def __init__(self, now: float):
        self.heard = now
        self.next: dict[int, int] = {}


class Acks:
    """The acknowledgement state of one relay (both ends); `enabled=False` turns it all off."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._announced: dict[tuple[int, int], int] = {}
        """(sid, origin) -> the `next` last announced to the peers."""
        self._members: set[int] = set()
        """Sessions we announced as their egress."""
        self._announce_at = 0.0
        self._keepalive_at = 0.0
        self.egress: dict[int, dict[str, EgressView]] = {}
        """Per session published here: the relays that deliver it, and how far."""
        self.resend_at: float | None = None
        self.reset_seen = False

    def sizes(self) -> dict[str, int]:
        """Entries of its tables, for `RelayCore.sizes`."""
        return {"acks_egress": sum(len(v) for v in self.egress.values()),
                "acks_announced": len(self._announced), "acks_members": len(self._members)}

    # -- egress ---------------------------------------------------------------------------------

    def announce(self, now: float, delivering: Iterable[int],
                 states: Mapping[tuple[int, int], Any]) -> bytes:
        """DELIVERED frames for every peer, or b"" when nothing is due. `delivering`: sessions
        with subscribers here; `states`: the relay's `Reorder` per (sid, origin)."""
        if now < self._announce_at:
            return b""
        self._announce_at = now + ANNOUNCE_INTERVAL_S
        keepalive = now >= self._keepalive_at
        if keepalive:
            self._keepalive_at = now + KEEPALIVE_S
        members = set(delivering)
        out = [header(DELIVERED, sid, 0, EGRESS | GONE) for sid in self._members - members]
        out += [header(DELIVERED, sid, 0, EGRESS) for sid in
                (members if keepalive else members - self._members)]
        self._members = members
        announced = self._announced
        for key, st in states.items():
            if not st.reliable or key[0] not in members:
                continue
            nxt = st.next
            if keepalive or announced.get(key) != nxt:
                announced[key] = nxt
                out.append(header(DELIVERED, key[0], nxt, 0, 0, key[1]))
        if len(announced) > 2 * len(states) + 64:  # states the core forgot
            self._announced = {k: v for k, v in announced.items() if k in states}
        return b"".join(out)

    # -- ingress --------------------------------------------------------------------------------

    def from_peer(self, peer: str, sid: int, origin: int, seq: int, flags: int, now: float,
                  published_here: bool) -> None:
        """A peer's DELIVERED. Kept only for sessions with publishers here (nobody else asks)."""
        views = self.egress.get(sid)
        if flags & GONE:
            if views is not None:
                views.pop(peer, None)
            return
        if not published_here:
            return
        if views is None:
            views = self.egress[sid] = {}
        v = views.get(peer)
        if v is None:
            v = views[peer] = EgressView(now)
        v.heard = now
        if not flags & EGRESS and seq > v.next.get(origin, 0):
            v.next[origin] = seq

    def peers_changed(self, live: set[str]) -> None:
        """Relays that left the overlay no longer count for any session's minimum."""
        for views in self.egress.values():
            for peer in [p for p in views if p not in live]:
                del views[peer]

    def forget(self, sid: int) -> None:
        """Nobody publishes `sid` here any more."""
        self.egress.pop(sid, None)

    def acknowledged(self, sid: int, origin: int, accepted: int, local_next: int | None,
                     unrouted: bool, now: float) -> int | None:
        """The overlay's acknowledgement of (sid, origin): every seq below it is delivered by
        every relay that delivers the session. `accepted`: the next seq this relay accepted from
        the publisher; `local_next`: how far this relay's own subscribers got (None: it has
        none). None: unknown yet (the session is routed and no egress relay has spoken)."""
        ack = accepted
        views = self.egress.get(sid)
        counted = False
        if views:
            for peer, v in list(views.items()):
                if now - v.heard > EGRESS_SILENT_S:
                    del views[peer]
                    continue
                counted = True
                n = v.next.get(origin, 0)
                if n < ack:
                    ack = n
        if local_next is not None:
            counted = True
            ack = min(ack, local_next)
        if not counted:
            return accepted if unrouted else None
        return ack

    def connection_reset(self) -> None:
        """A peer connection was lost: what it carried is gone (resend after `RESEND_SETTLE_S`)."""
        self.reset_seen = True

    def resend_due(self, now: float) -> bool:
        """Whether clients should be told to resend now (once per settled burst of resets)."""
        if self.reset_seen:
            self.reset_seen = False
            if self.resend_at is None:
                self.resend_at = now + RESEND_SETTLE_S
        if self.resend_at is not None and now >= self.resend_at:
            self.resend_at = None
            return True
        return False


def told_frame(sid: int, origin: int, seq: int, resend: bool = False) -> bytes:
    """A DELIVERED for a publishing client: acknowledged below `seq`; with `resend`, send again
    what is not."""
    return header(DELIVERED, sid, seq, RESEND if resend else 0, 0, origin)
