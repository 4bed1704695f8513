"""Security of the overlay: who may connect, what they may do, and what input is acceptable.

Each module holds one decision, pure where it can be, so the relay, the controller and the
gateway call the same rules with small hooks: `schema` (control messages checked before use),
`limits` (hello timeout, connection cap), `tokens` (signed client credentials), `permissions`
(what a credential allows, per topic), `certs` (the overlay's small certificate authority) and
`tls` (the `ssl` contexts built from it). Security is off unless configured, so a loopback
testbed runs as it always has.
"""

from stemflow.protocol import ProtocolError


class SecurityError(ProtocolError):
    """A peer was refused: bad input, bad credentials, or a right it does not hold. The message
    is the reason the peer is told before its connection closes."""
