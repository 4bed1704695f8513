"""Steady-state TCP throughput models, shared by the optimizer, the simulator and the docs.

Owns the closed-form rate of one long-lived TCP connection over a path of given RTT, random
loss and bottleneck bandwidth, for each congestion control we model, and of P such connections
in parallel. It knows nothing of graphs or sessions. Rates in Mbit/s, RTT in ms, sizes in bytes.

Why this matters for an overlay: a connection's rate is bounded by its window over its RTT and by
loss over RTT. A relay splits one long-RTT path into shorter hops, each with its own windows, and
opens P connections per hop: both raise these bounds, not the link's bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stemflow.scenario import CongestionControl

MATHIS_C = math.sqrt(3.0 / 2.0)
"""Mathis et al. constant for periodic loss and no delayed ACKs (CCR 1997, eq. 3)."""

CUBIC_C = 0.4
"""CUBIC scaling constant C (RFC 8312 §5: 0.4)."""

CUBIC_BETA = 0.7
"""CUBIC multiplicative decrease factor beta_cubic (RFC 8312 §4.5: 0.7)."""

PFTK_ACKED_PER_ACK = 1
"""Packets acknowledged per ACK as far as window growth goes, b in PFTK. 1, not the textbook 2
for delayed ACKs: Linux grows cwnd by the segments an ACK covers (appropriate byte counting,
RFC 3465; `tcp_cong_avoid_ai`), so delayed ACKs do not slow congestion avoidance. With b = 2
kernel Reno beat the model by 1.2-2.0x at every lossy single-connection cell of
docs/benchmarks.md, "Capacity model against kernel TCP"; b = 1 raises the model by sqrt(2)."""

LINUX_MIN_RTO_S = 0.2
"""Linux TCP_RTO_MIN (200 ms); PFTK's T0 is taken as RTT + this."""

BBR_LOSS_TOLERANCE = 0.02
"""Up to this random loss BBR keeps its bottleneck share. BBR (v1, the kernel's `bbr`) does not
treat random loss as congestion (Cardwell et al., CACM 2017); measured here (docs/benchmarks.md,
"Capacity model against kernel TCP") kernel BBR kept 0.91-0.96 of the link at 1% loss at every
RTT and P, where the old 1% threshold predicted the CUBIC rate (up to 160x too low). 2% is just
above the largest loss measured; beyond it the model falls back to CUBIC, unchecked."""


@dataclass(frozen=True)
class ConnectionRate:
    """The rate of one connection and the bound that sets it ('window', 'loss', 'bandwidth')."""

    rate_mbps: float
    limited_by: str
    window_mbps: float
    loss_mbps: float
    bandwidth_mbps: float


def window_limit_mbps(rwnd_bytes: float, rtt_ms: float) -> float:
    """At most one window in flight per RTT: rwnd / RTT.

    Example: a 4 MiB window at 182.5 ms carries 4 * 2**20 * 8 / 0.1825 = 183.9 Mbit/s.
    """
    if rtt_ms <= 0:
        return math.inf
    return rwnd_bytes * 8.0 / (rtt_ms / 1e3) / 1e6


def mathis_mbps(mss_bytes: float, rtt_ms: float, loss: float, c: float = MATHIS_C) -> float:
    """Reno under random loss: MSS/RTT * C/sqrt(p) (Mathis, Semke, Mahdavi, Ott, CCR 1997).

    Example: MSS 1448 B, RTT 200 ms, p = 1% gives 0.709 Mbit/s.
    """
    if loss <= 0 or rtt_ms <= 0:
        return math.inf
    return mss_bytes * 8.0 / (rtt_ms / 1e3) * c / math.sqrt(loss) / 1e6


def pftk_mbps(mss_bytes: float, rtt_ms: float, loss: float, rwnd_bytes: float = math.inf,
              b: int = PFTK_ACKED_PER_ACK, t0_s: float | None = None) -> float:
    """Reno with timeouts: Padhye, Firoiu, Towsley, Kurose (SIGCOMM 1998), eq. 33 (full model).

    B = min(Wmax/RTT, 1 / (RTT sqrt(2bp/3) + T0 min(1, 3 sqrt(3bp/8)) p (1 + 32 p^2))) packets/s,
    with T0 = RTT + 200 ms (Linux's RTO floor) unless given.
    """
    if rtt_ms <= 0:
        return math.inf
    rtt = rtt_ms / 1e3
    wmax = window_limit_mbps(rwnd_bytes, rtt_ms)
    if loss <= 0:
        return wmax
    t0 = rtt + LINUX_MIN_RTO_S if t0_s is None else t0_s
    denom = rtt * math.sqrt(2 * b * loss / 3) + t0 * min(1.0, 3 * math.sqrt(3 * b * loss / 8)) * loss * (
        1 + 32 * loss**2)
    return min(wmax, mss_bytes * 8.0 / denom / 1e6)


def cubic_mbps(mss_bytes: float, rtt_ms: float, loss: float) -> float:
    """CUBIC's average rate under random loss, RFC 8312 §5.

    Average window (packets) in the CUBIC region (§5.1, deterministic loss model):
        W = (C (3 + beta) / (4 (1 - beta)))^(1/4) * RTT^(3/4) / p^(3/4)
    and in the TCP-friendly region (§5.2) the Reno window 1.22 / p^(1/2) (Mathis); CUBIC takes
    the larger. Rate = W * MSS / RTT.
    """
    if loss <= 0 or rtt_ms <= 0:
        return math.inf
    rtt = rtt_ms / 1e3
    w_cubic = (CUBIC_C * (3 + CUBIC_BETA) / (4 * (1 - CUBIC_BETA))) ** 0.25 * rtt**0.75 / loss**0.75
    w_reno = MATHIS_C / math.sqrt(loss)
    return max(w_cubic, w_reno) * mss_bytes * 8.0 / rtt / 1e6


def bbr_loss_mbps(mss_bytes: float, rtt_ms: float, loss: float) -> float:
    """BBR is model-based: random loss below `BBR_LOSS_TOLERANCE` does not slow it (so +inf).

    Above that we model a BBRv2-like retreat to loss-based behaviour: the CUBIC rate. This is a
    modelling choice, named here, not a published closed form.
    """
    if loss < BBR_LOSS_TOLERANCE:
        return math.inf
    return cubic_mbps(mss_bytes, rtt_ms, loss)


def loss_bound_mbps(cc: CongestionControl | str, mss_bytes: float, rtt_ms: float,
                    loss: float) -> float:
    """The loss-limited rate of one connection under congestion control `cc`."""
    cc = CongestionControl(cc)
    if cc is CongestionControl.RENO:
        return pftk_mbps(mss_bytes, rtt_ms, loss)
    if cc is CongestionControl.CUBIC:
        return cubic_mbps(mss_bytes, rtt_ms, loss)
    return bbr_loss_mbps(mss_bytes, rtt_ms, loss)


def parallel_rate(cc: CongestionControl | str, parallel: int, rtt_ms: float, loss: float,
                  rwnd_bytes: float, mss_bytes: float,
                  bandwidth_mbps: float = math.inf) -> ConnectionRate:
    """P connections sharing a path: P times one connection's rate, capped by the bandwidth.

    Each connection has its own window and sees the path's random loss independently, so the
    window and loss bounds add up (the reason parallel TCP helps on high-BDP paths); the
    bandwidth bound does not. BBR paces at the delivery rate it measures, so it keeps
    bandwidth x (1 - p) of a lossy bottleneck.
    """
    bounds = {
        "window": parallel * window_limit_mbps(rwnd_bytes, rtt_ms),
        "loss": parallel * loss_bound_mbps(cc, mss_bytes, rtt_ms, loss),
        "bandwidth": bandwidth_mbps * (1.0 - loss) if CongestionControl(cc) is CongestionControl.BBR
        else bandwidth_mbps,
    }
    limited_by = min(bounds, key=bounds.__getitem__)
    return ConnectionRate(bounds[limited_by], limited_by, bounds["window"], bounds["loss"],
                          bounds["bandwidth"])


def connection_rate(cc: CongestionControl | str, rtt_ms: float, loss: float, rwnd_bytes: float,
                    mss_bytes: float, bandwidth_mbps: float = math.inf) -> ConnectionRate:
    """One connection alone on a path: the least of its window, loss and bandwidth bounds."""
    return parallel_rate(cc, 1, rtt_ms, loss, rwnd_bytes, mss_bytes, bandwidth_mbps)
