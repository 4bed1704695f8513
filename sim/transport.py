"""TCP connections as the fluid model sees them: a handshake, slow start, then a model rate.

Owns the time-varying rate cap of one connection (and of P parallel ones): the three-way
handshake costs one RTT before data; slow start then doubles the window every RTT from the
initial window until the connection reaches its steady rate, which comes from `stemflow.tcp`
(window, loss and congestion-control bounds). It also knows when an idle connection falls back
to slow start (its RTO) and how many round trips a message needs on a cold connection. It does
not schedule anything: `sim.model` turns these steps into simulation events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stemflow.network import LinkState
from stemflow.scenario import TcpSettings
from stemflow.tcp import LINUX_MIN_RTO_S, parallel_rate


@dataclass(frozen=True)
class ConnectionModel:
    """P parallel connections over one path: their steady rate and how they get there."""

    rtt_ms: float
    steady_mbps: float
    """What the P connections carry once slow start is over (window, loss, bandwidth bounds)."""
    limited_by: str
    parallel: int
    initial_window_bytes: float
    bandwidth_mbps: float

    @classmethod
    def over(cls, path: LinkState, tcp: TcpSettings, parallel: int,
             initial_window_segments: float) -> ConnectionModel:
        rate = parallel_rate(tcp.congestion_control, parallel, path.rtt_ms, path.loss, tcp.rwnd_bytes,
                             tcp.mss_bytes, path.bandwidth_mbps)
        return cls(path.rtt_ms, rate.rate_mbps, rate.limited_by, parallel,
                   initial_window_segments * tcp.mss_bytes, path.bandwidth_mbps)

    @property
    def handshake_s(self) -> float:
        """SYN, SYN-ACK: data can follow the ACK one round trip after the connect call."""
        return self.rtt_ms / 1e3

    @property
    def rto_s(self) -> float:
        """Retransmission timeout of a settled connection: RTT plus Linux's 200 ms floor."""
        return self.rtt_ms / 1e3 + LINUX_MIN_RTO_S

    def slow_start(self) -> list[tuple[float, float]]:
        """Rate caps of slow start as (seconds after the first data, Mbit/s), ending at steady.

        Round k sends P x IW x 2^k bytes in one RTT (RFC 5681 §3.1, no losses), until that is
        more than the steady rate carries. Example: IW = 10 x 1448 B, RTT 182.5 ms, P = 1 starts
        at 0.63 Mbit/s and needs 9 rounds (1.64 s) to reach 181 Mbit/s.
        """
        if self.rtt_ms <= 0 or not math.isfinite(self.steady_mbps):
            return [(0.0, self.steady_mbps)]
        rtt_s = self.rtt_ms / 1e3
        steps: list[tuple[float, float]] = []
        window = self.parallel * self.initial_window_bytes
        k = 0
        while True:
            rate = window * 8 / rtt_s / 1e6
            if rate >= self.steady_mbps:
                steps.append((k * rtt_s, self.steady_mbps))
                return steps
            steps.append((k * rtt_s, rate))
            window *= 2
            k += 1

    def rounds_for(self, size_bytes: float) -> int:
        """Round trips a cold connection needs to send `size_bytes` (1 if it fits in IW)."""
        per_conn = self.initial_window_bytes
        if size_bytes <= per_conn:
            return 1
        return math.ceil(math.log2(size_bytes / per_conn + 1))


def burst_s(size_bytes: float, window_mbps: float, rtt_ms: float, bandwidth_mbps: float,
            in_slow_start: bool = False) -> float:
    """A small unit sent into a connection whose window allows `window_mbps` over `rtt_ms`.

    What fits in one window leaves at the path's bandwidth; each further window-full waits one
    more round trip for ACKs — and in slow start each round's window is twice the last. Example:
    1 KB into a cold 3 x IW10 bundle at 182.5 ms leaves in 0.002 ms at 5 Gbit/s, not in the
    4.2 ms the window rate would suggest; 104 KB into one IW10 connection needs 4 rounds.
    """
    window_bytes = window_mbps * 1e6 / 8 * rtt_ms / 1e3
    if window_bytes <= 0:
        return math.inf
    windows = size_bytes / window_bytes
    rounds = math.ceil(math.log2(windows + 1)) if in_slow_start else math.ceil(windows)
    return transfer_s(size_bytes, bandwidth_mbps) + max(rounds - 1, 0) * rtt_ms / 1e3


def drain_s(backlog_bytes: float, window_mbps: float, rtt_ms: float, in_slow_start: bool) -> float:
    """Time for a connection to send `backlog_bytes` already queued in its socket.

    At a steady window it sends one window per RTT. In slow start the window doubles every RTT,
    so n bytes take log2(n / window + 1) round trips, not n / window of them. Example: 128 KiB
    behind a 14.5 KB window at 182.5 ms: 3.3 round trips (0.61 s), not 9 (1.65 s).
    """
    rtt_s = rtt_ms / 1e3
    window_bytes = window_mbps * 1e6 / 8 * rtt_s
    if window_bytes <= 0:
        return math.inf
    if in_slow_start:
        return math.log2(backlog_bytes / window_bytes + 1) * rtt_s
    return backlog_bytes / window_bytes * rtt_s


def transfer_s(size_bytes: float, rate_mbps: float) -> float:
    """Serialization: time to put `size_bytes` on a path at `rate_mbps`."""
    if rate_mbps <= 0:
        return math.inf
    return size_bytes * 8 / (rate_mbps * 1e6)
