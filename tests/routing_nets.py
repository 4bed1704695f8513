"""Small overlays for routing tests: explicit graphs, and hypothesis strategies for random ones.

Windows are huge and loss is zero, so a hop's effective capacity is exactly its bandwidth and
tests can reason in whole Mbit/s.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from stemflow.network import ClientSite, LinkState, NetworkState
from stemflow.routing import Demand
from stemflow.scenario import Priority, TcpSettings

BIG_WINDOW = TcpSettings(rwnd_bytes=2**40)
ACCESS = LinkState(1.0, 1e6)


def network(links: dict[tuple[str, str], tuple[float, float]], symmetric: bool = False) -> NetworkState:
    """A snapshot from {(a, b): (rtt_ms, bandwidth_mbps)}; one client `c-<dc>` per datacenter."""
    states = {e: LinkState(rtt, bw) for e, (rtt, bw) in links.items()}
    if symmetric:
        states.update({(b, a): s for (a, b), s in states.items() if (b, a) not in states})
    dcs = tuple(sorted({n for e in states for n in e}))
    clients = {f"c-{d}": ClientSite(f"c-{d}", d, ACCESS) for d in dcs}
    return NetworkState(dcs, states, clients, tcp=BIG_WINDOW, parallel=1)


def demand(sid: str, source: str, sinks: list[str] | str, cap: float = math.inf,
           delay_sensitive: bool = False, budget_ms: float | None = None) -> Demand:
    sinks = [sinks] if isinstance(sinks, str) else list(sinks)
    return Demand(sid, source, tuple(sinks), f"c-{source}", tuple(f"c-{t}" for t in sinks),
                  multicast=len(sinks) > 1, max_rate_mbps=cap,
                  priority=Priority.DELAY_SENSITIVE if delay_sensitive else Priority.BULK,
                  latency_budget_ms=budget_ms)


@st.composite
def networks(draw, min_n: int = 3, max_n: int = 6) -> NetworkState:
    """A strongly connected random digraph (a ring plus random chords), integer capacities."""
    n = draw(st.integers(min_n, max_n))
    names = [f"d{i}" for i in range(n)]
    edges = {(names[i], names[(i + 1) % n]) for i in range(n)}
    chords = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                           max_size=2 * n))
    edges |= {(names[a], names[b]) for a, b in chords if a != b}
    links = {e: (float(draw(st.integers(5, 200))), float(draw(st.sampled_from([50, 100, 200, 300, 500]))))
             for e in sorted(edges)}
    return network(links)


@st.composite
def unicast_demands(draw, net: NetworkState, max_sessions: int = 5) -> list[Demand]:
    k = draw(st.integers(1, max_sessions))
    out = []
    for i in range(k):
        a, b = draw(st.lists(st.sampled_from(net.datacenters), min_size=2, max_size=2, unique=True))
        cap = draw(st.sampled_from([math.inf, math.inf, 40.0, 120.0]))
        out.append(demand(f"s{i}", a, b, cap))
    return out


@st.composite
def mixed_demands(draw, net: NetworkState, max_sessions: int = 4) -> list[Demand]:
    out = draw(unicast_demands(net, max_sessions))
    for i in range(draw(st.integers(0, 2))):
        src = draw(st.sampled_from(net.datacenters))
        others = [d for d in net.datacenters if d != src]
        sinks = draw(st.lists(st.sampled_from(others), min_size=2, max_size=len(others), unique=True))
        cap = draw(st.sampled_from([math.inf, 60.0]))
        out.append(demand(f"m{i}", src, sinks, cap, delay_sensitive=draw(st.booleans())))
    return out
