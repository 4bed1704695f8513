"""What a relay measures about its peer links, and how: ping RTTs, byte counters, TCP_INFO.

Owns the parsing of Linux's `struct tcp_info` (RTT, retransmits, bytes acked) and the small
accumulators a link keeps between reports. Sending pings and reporting is the peer link's and
the server's; interpreting the numbers is the controller's.
"""

from __future__ import annotations

import socket
import statistics
import struct
from collections import deque
from dataclasses import dataclass

TCP_INFO_BYTES = 232
"""Linux 5.x+ `struct tcp_info` size up to `tcpi_delivery_rate`'s neighbours; older kernels
return fewer bytes and we read only the fields they hold."""
_TCPI_RTT = struct.Struct("=II")  # tcpi_rtt, tcpi_rttvar at offset 68 (microseconds)
_TCPI_TOTAL_RETRANS = struct.Struct("=I")  # offset 100
_TCPI_BYTES_ACKED = struct.Struct("=Q")  # offset 120
_TCPI_SEGS_OUT = struct.Struct("=I")  # offset 136
_TCPI_MIN_RTT = struct.Struct("=I")  # offset 148 (microseconds; Linux >= 4.6)
RTT_SAMPLES = 16
"""Ping RTTs kept per link; the report quotes their median, robust to one queued ping."""


@dataclass(frozen=True)
class TcpInfo:
    rtt_us: int
    rttvar_us: int
    total_retrans: int
    bytes_acked: int
    segs_out: int
    min_rtt_us: int | None = None
    """The kernel's windowed minimum RTT (tcp_min_rtt_wlen, 300 s by default): the path's
    propagation delay, free of the queue our own traffic builds, which ping RTTs include."""


def tcp_info(sock: socket.socket) -> TcpInfo | None:
    """The kernel's view of one TCP connection, or None where TCP_INFO is unavailable."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return None
    if len(raw) < 140:
        return None
    rtt, rttvar = _TCPI_RTT.unpack_from(raw, 68)
    (retrans,) = _TCPI_TOTAL_RETRANS.unpack_from(raw, 100)
    (acked,) = _TCPI_BYTES_ACKED.unpack_from(raw, 120)
    (segs_out,) = _TCPI_SEGS_OUT.unpack_from(raw, 136)
    min_rtt = _TCPI_MIN_RTT.unpack_from(raw, 148)[0] if len(raw) >= 152 else None
    return TcpInfo(rtt, rttvar, retrans, acked, segs_out, min_rtt or None)


class RttSamples:
    """The last few ping round trips to a peer, in milliseconds."""

    def __init__(self) -> None:
        self._ms: deque[float] = deque(maxlen=RTT_SAMPLES)

    def add(self, rtt_ms: float) -> None:
        self._ms.append(rtt_ms)

    def median_ms(self) -> float | None:
        return statistics.median(self._ms) if self._ms else None


@dataclass
class Delta:
    """Turns a monotonically growing counter into per-interval increments."""

    last: int = 0

    def step(self, now: int) -> int:
        d, self.last = max(0, now - self.last), now
        return d
