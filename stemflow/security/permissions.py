"""What an authenticated connection may do, and when its right ends: the relay's and the
gateway's one place for "may this connection publish or subscribe to this topic".

Owns the admission of a client (its HELLO's token, verified by `tokens`), the per-connection
grant (pattern sets from the token, with a per-topic cache so a topic is matched once), expiry
and revocation, and the refusals with the counter each one bumps. It never touches a socket:
the relay core calls `admit` at HELLO and `check_publish` / `check_subscribe` when a client
names a topic (ADVERTISE precedes every DATA, so a publish is checked once per topic, not per
message), and asks `due(now)` on its timer for the connections whose token ran out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stemflow.security import SecurityError
from stemflow.security.tokens import Claims, TokenError, verify_token

REVOCATION_POLL_S = 1.0
"""How often the revocation file is looked at (one stat): a revoked token ends within a second,
the relay's report period, and the file costs nothing between changes."""
MAX_CACHED_TOPICS = 4096
"""Per connection, topics whose answer is remembered; a connection naming more (a scan) pays
the pattern match again, never unbounded memory."""


class Refused(SecurityError):
    """A refusal the connection is told; `counter` names the relay counter it bumps."""

    def __init__(self, reason: str, counter: str):
        super().__init__(reason)
        self.counter = counter


@dataclass
class Grant:
    """One connection's rights: from its token, until `deadline` (the caller's monotonic clock)."""

    claims: Claims
    deadline: float
    _publish: dict[str, bool] = field(default_factory=dict)
    _subscribe: dict[str, bool] = field(default_factory=dict)

    def may_publish(self, topic: str) -> bool:
        return _cached(self._publish, topic, self.claims.publish.covers)

    def may_subscribe(self, topic: str) -> bool:
        return _cached(self._subscribe, topic, self.claims.subscribe.covers)


def _cached(cache: dict[str, bool], topic: str, covers: Callable[[str], bool]) -> bool:
    ok = cache.get(topic)
    if ok is None:
        ok = covers(topic)
        if len(cache) < MAX_CACHED_TOPICS:
            cache[topic] = ok
    return ok


class Authenticator:
    """Client admission for one relay or gateway: a verify key, the grants it gave, revocations.

    `wall_clock` is the clock tokens' times are in (Unix seconds); `now` arguments are the
    caller's own (monotonic) clock, in which deadlines are kept. `revocations`: a file of token
    ids (the `jti` claim), one per line, re-read when it changes; a token named there is
    refused, and a connection holding it ends."""

    def __init__(self, key: Ed25519PublicKey, wall_clock: Callable[[], float] = time.time,
                 revocations: Path | None = None):
        self.key = key
        self.wall_clock = wall_clock
        self.grants: dict[Hashable, Grant] = {}
        self.revoked: set[str] = set()  # by `revoke`
        self.revocations = revocations
        self._revoked_in_file: set[str] = set()
        self._revocations_seen: float | None = None  # the file's mtime when last read
        self._revocations_polled = -math.inf
        self._poll_revocations(0.0)

    def admit(self, conn: Hashable, hello: object, now: float) -> Grant:
        """Verify the token a client's HELLO carries; the grant, or `Refused` with the reason."""
        token = hello.get("token") if isinstance(hello, dict) else None
        try:
            claims = verify_token(token, self.key, self.wall_clock())
        except TokenError as e:
            raise Refused(str(e), "refused_token") from None
        if self.is_revoked(claims.token_id):
            raise Refused("token revoked", "refused_token")
        grant = Grant(claims, now + (claims.expires_at - self.wall_clock()))
        self.grants[conn] = grant
        return grant

    def forget(self, conn: Hashable) -> None:
        self.grants.pop(conn, None)

    def check_publish(self, grant: Grant, topic: str) -> None:
        if not grant.may_publish(topic):
            raise Refused(f"permission denied: publish to {topic!r} (token allows: "
                          f"{grant.claims.publish})", "denied_publish")

    def check_subscribe(self, grant: Grant, topic: str) -> None:
        if not grant.may_subscribe(topic):
            raise Refused(f"permission denied: subscribe to {topic!r} (token allows: "
                          f"{grant.claims.subscribe})", "denied_subscribe")

    def revoke(self, token_ids: Iterable[str]) -> None:
        """Refuse these tokens from now on; connections holding them end at the next `due`."""
        self.revoked.update(token_ids)

    def _poll_revocations(self, now: float) -> None:
        if self.revocations is None or now - self._revocations_polled < REVOCATION_POLL_S:
            return
        self._revocations_polled = now
        try:
            mtime = self.revocations.stat().st_mtime
            if mtime != self._revocations_seen:
                lines = self.revocations.read_text().splitlines()
                self._revoked_in_file = {x.split("#")[0].strip() for x in lines} - {""}
                self._revocations_seen = mtime
        except OSError:
            self._revoked_in_file, self._revocations_seen = set(), None  # no file: none by it

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self.revoked or token_id in self._revoked_in_file

    def due(self, now: float) -> list[tuple[Hashable, str, str]]:
        """Connections whose right ended, forgotten here: (conn, reason, counter)."""
        self._poll_revocations(now)
        out = []
        for conn, g in list(self.grants.items()):
            if g.deadline <= now:
                out.append((conn, "token expired", "closed_token_expired"))
            elif self.is_revoked(g.claims.token_id):
                out.append((conn, "token revoked", "closed_token_revoked"))
            else:
                continue
            del self.grants[conn]
        return out
