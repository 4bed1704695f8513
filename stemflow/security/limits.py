"""Limits on connections a relay accepts: how long one may stay silent, how many may be open.

Owns the two numbers and the admission rule; the relay's shell counts and carries out what this
module decides (refuse a connection over the cap, close one that never said HELLO). Without them
a relay kept every connection that never spoke: 2 000 of them held 414 MB (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass

HELLO_TIMEOUT_S = 3.0
"""A connection that has not said HELLO this long after it opened is closed. HELLO is a client's
first write, so it comes one round trip after connect; NATS gives a client 3 s to authenticate
when TLS is on (its TLS handshake timeout, 2 s, plus 1 s), and a TLS handshake here fits in the
same budget on the longest path we emulate (182.5 ms RTT)."""
MAX_CONNECTIONS = 1000
"""Connections one relay keeps open at once (clients, peers' P connections, not yet identified
ones). Each holds a 256 KiB receive buffer (`protocol.RECV_BUFFER_BYTES`), so a thousand idle
ones cost about 256 MB; the default soft limit of open files (1024) would refuse more anyway,
with an error the relay could not explain to the peer."""


@dataclass(frozen=True)
class ConnectionLimits:
    hello_timeout_s: float = HELLO_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.hello_timeout_s > 0:
            raise ValueError(f"hello timeout must be > 0 s, got {self.hello_timeout_s}")
        if self.max_connections < 1:
            raise ValueError(f"connection cap must be ≥ 1, got {self.max_connections}")

    def refusal(self, open_connections: int) -> str | None:
        """Why a new connection is refused when `open_connections` are open already, or None."""
        if open_connections >= self.max_connections:
            return f"relay is at its connection limit ({self.max_connections}); try another relay"
        return None
