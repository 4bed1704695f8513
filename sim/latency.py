"""How long one message or frame takes over a path: propagation, serialization, queueing, processing.

Owns the latency arithmetic of small units of data (messages, video frames), which the fluid
model is too coarse for. A unit crossing an overlay hop pays half the hop's RTT (propagation),
its size at the hop's bandwidth, plus a round trip for every further window-full the hop's
connections cannot send at once (delay-sensitive frames go ahead of bulk in the relay's queues,
so the whole window of one connection is theirs), and, when bulk
traffic saturates the hop, the unsent bytes already in the socket it lands in (queueing: the
relay's priority queue cannot reorder what the kernel holds) — unless it is delay-sensitive:
relays send those on a connection of their own (`stemflow.relay.peers`), whose kernel queue
holds only delay-sensitive frames, so they wait behind no bulk bytes. Every relay it visits adds the
relay's processing delay. Over the Internet, a new connection first pays its handshake and its
slow-start rounds. Times in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from stemflow.sim.model import Network
from stemflow.sim.transport import ConnectionModel, burst_s, drain_s, transfer_s


def access_s(conn: ConnectionModel, size_bytes: float) -> float:
    """A client's persistent connection to its relay: half its RTT plus serialization."""
    return conn.rtt_ms / 2e3 + burst_s(size_bytes, conn.steady_mbps, conn.rtt_ms, conn.bandwidth_mbps)


def relay_s(processing_delay_ms: float) -> float:
    """A relay receives a frame, looks up its table entry and queues it for the next hop."""
    return processing_delay_ms / 1e3


def hop_s(network: Network, edge: tuple[str, str], size_bytes: float,
          delay_sensitive: bool = False) -> float:
    """One overlay hop over its bundle of persistent connections, as the hop is right now."""
    bundle = network.bundles[edge]
    per_connection_mbps = bundle.cap_mbps / bundle.connections.parallel
    in_slow_start = bundle.cap_mbps < bundle.connections.steady_mbps
    wait = 0.0
    if not delay_sensitive and network.fluid.solver.saturated(bundle.resource):
        wait = drain_s(network.params.notsent_lowat_bytes, per_connection_mbps, bundle.link.rtt_ms,
                       in_slow_start)
    return (bundle.link.rtt_ms / 2e3 + wait
            + burst_s(size_bytes, per_connection_mbps, bundle.link.rtt_ms, bundle.link.bandwidth_mbps,
                      in_slow_start))


def overlay_s(network: Network, hops: Sequence[str], size_bytes: float, processing_delay_ms: float,
              delay_sensitive: bool = False) -> float:
    """From the ingress relay's receipt to the egress relay's hand-off to its subscriber."""
    total = relay_s(processing_delay_ms) * len(hops)
    for edge in zip(hops, hops[1:], strict=False):
        total += hop_s(network, edge, size_bytes, delay_sensitive)
    return total


def propagation_s(network: Network, hops: Sequence[str], processing_delay_ms: float) -> float:
    """The last byte of a transfer: propagation and processing only (it is already serialized)."""
    total = relay_s(processing_delay_ms) * len(hops)
    for edge in zip(hops, hops[1:], strict=False):
        total += network.bundles[edge].link.rtt_ms / 2e3
    return total


def direct_s(conn: ConnectionModel, size_bytes: float, new_connection: bool) -> float:
    """One message over the Internet path: handshake and slow-start rounds if the connection is new.

    A new connection sends IW, 2 IW, 4 IW... per RTT, so a message larger than the initial window
    needs `rounds_for(size) - 1` extra round trips (1 KB needs none).
    """
    rtt_s = conn.rtt_ms / 1e3
    if new_connection:
        return (conn.handshake_s + (conn.rounds_for(size_bytes) - 1) * rtt_s + rtt_s / 2
                + transfer_s(size_bytes, conn.bandwidth_mbps))
    return rtt_s / 2 + burst_s(size_bytes, conn.steady_mbps, conn.rtt_ms, conn.bandwidth_mbps)
