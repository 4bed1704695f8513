"""Overlay membership: who may act as relay X towards the controller and the other relays.

Owns the one rule: the holder of a certificate from the overlay's CA (`certs`) that names X, in
the role it acts in. The controller applies it to REGISTER (and so to every report and heartbeat
that follow on that connection: a relay's link reports describe only its own links, since the
controller attributes them to the name it verified); a relay applies it to a peer's HELLO. A
replayed or forged REGISTER cannot ride another member's TLS session, and a name without its
certificate cannot push the real holder out.
"""

from __future__ import annotations

from stemflow.security.certs import Identity
from stemflow.security.permissions import Refused


def check_member(identity: Identity | None, claimed: str, role: str = "relay") -> None:
    """Refuse (`Refused`, counter `refused_membership`) unless `identity` is `claimed` in `role`."""
    if identity is None:
        raise Refused(f"{role} {claimed!r}: no certificate of the overlay's CA presented "
                      "(see 'stemflow certs')", "refused_membership")
    if identity.role != role or identity.name != claimed:
        raise Refused(f"{role} {claimed!r}: the certificate presented names {identity.role} "
                      f"{identity.name!r}", "refused_membership")
