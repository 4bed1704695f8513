"""The overlay as the controller sees it: datacenters, links and their state, clients, Internet.

Owns `NetworkState`, an immutable snapshot built from a scenario (configured state) and updated
from relay reports (measured state), and the effective capacity of each overlay hop: what P
parallel TCP connections of the configured congestion control carry over it, capped by its
bandwidth (`stemflow.tcp`). It makes no routing decisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import networkx as nx

from stemflow.scenario import Scenario, TcpSettings
from stemflow.tcp import ConnectionRate, connection_rate, parallel_rate

Edge = tuple[str, str]


@dataclass(frozen=True)
class LinkState:
    """A path's state, configured or measured."""

    rtt_ms: float
    bandwidth_mbps: float
    loss: float = 0.0


@dataclass(frozen=True)
class ClientSite:
    """A client and the access hop to the relay of its datacenter."""

    name: str
    datacenter: str
    access: LinkState


def _combine(states: list[LinkState]) -> LinkState:
    """Concatenate paths: RTTs add, the narrowest bandwidth wins, delivery probabilities multiply."""
    keep = math.prod(1.0 - s.loss for s in states)
    return LinkState(sum(s.rtt_ms for s in states), min(s.bandwidth_mbps for s in states), 1.0 - keep)


@dataclass(frozen=True)
class NetworkState:
    """Snapshot of the overlay: a pure value that routing strategies read and never change."""

    datacenters: tuple[str, ...]
    links: Mapping[Edge, LinkState]
    clients: Mapping[str, ClientSite]
    internet: Mapping[Edge, LinkState] = field(default_factory=dict)
    tcp: TcpSettings = TcpSettings()
    parallel: int = 4

    @classmethod
    def from_scenario(cls, s: Scenario) -> NetworkState:
        links: dict[Edge, LinkState] = {}
        for ln in s.links:
            st = LinkState(ln.rtt_ms, ln.bandwidth_mbps, ln.loss)
            links[(ln.a, ln.b)] = st
            if not ln.directed:
                links[(ln.b, ln.a)] = st
        clients = {c.name: ClientSite(c.name, c.datacenter,
                                      LinkState(c.access.rtt_ms, c.access.bandwidth_mbps, c.access.loss))
                   for c in s.clients}
        internet: dict[Edge, LinkState] = {}
        for p in s.internet:
            internet[(p.a, p.b)] = internet[(p.b, p.a)] = LinkState(p.rtt_ms, p.bandwidth_mbps, p.loss)
        return cls(tuple(s.datacenter_names), links, clients, internet, s.tcp, s.relay.parallel)

    def with_links(self, updates: Mapping[Edge, LinkState]) -> NetworkState:
        """A new snapshot with some links' state replaced (measurements) or added."""
        return replace(self, links={**self.links, **updates})

    def without(self, datacenter: str) -> NetworkState:
        """A new snapshot with a datacenter (a dead relay) and its links removed."""
        return replace(self, datacenters=tuple(d for d in self.datacenters if d != datacenter),
                       links={e: s for e, s in self.links.items() if datacenter not in e})

    # -- capacities ---------------------------------------------------------------------------

    def hop_rate(self, a: str, b: str) -> ConnectionRate:
        """Effective capacity of overlay hop a->b, with the bound that sets it (for display)."""
        return self._hop_rates[(a, b)]

    def capacity_mbps(self, a: str, b: str) -> float:
        return self._hop_rates[(a, b)].rate_mbps

    @cached_property
    def _hop_rates(self) -> dict[Edge, ConnectionRate]:
        t = self.tcp
        return {e: parallel_rate(t.congestion_control, self.parallel, s.rtt_ms, s.loss, t.rwnd_bytes,
                                 t.mss_bytes, s.bandwidth_mbps)
                for e, s in self.links.items()}

    @cached_property
    def graph(self) -> nx.DiGraph:
        """Overlay digraph; edges carry `capacity_mbps`, `rtt_ms`, `loss`."""
        g = nx.DiGraph()
        g.add_nodes_from(self.datacenters)
        for (a, b), s in self.links.items():
            g.add_edge(a, b, capacity_mbps=self.capacity_mbps(a, b), rtt_ms=s.rtt_ms, loss=s.loss)
        return g

    # -- clients and the Internet -------------------------------------------------------------

    def access_rate(self, client: str) -> ConnectionRate:
        """One TCP connection over the client's access hop (a client opens one per session)."""
        a, t = self.clients[client].access, self.tcp
        return connection_rate(t.congestion_control, a.rtt_ms, a.loss, t.rwnd_bytes, t.mss_bytes,
                               a.bandwidth_mbps)

    def internet_path(self, a: str, b: str) -> LinkState:
        """The path a direct connection between two clients takes.

        Explicit `internet` entries win. Otherwise the clients' access hops joined by the
        lowest-RTT overlay route between their datacenters: in the paper, the end hosts of the
        direct test sit in the same cloud regions and ride the same provider backbone.
        """
        if (a, b) in self.internet:
            return self.internet[(a, b)]
        ca, cb = self.clients[a], self.clients[b]
        parts = [ca.access]
        if ca.datacenter != cb.datacenter:
            route = nx.shortest_path(self.graph, ca.datacenter, cb.datacenter, weight="rtt_ms")
            parts += [self.links[e] for e in zip(route, route[1:], strict=False)]
        parts.append(cb.access)
        return _combine(parts)

    def direct_rate(self, a: str, b: str) -> ConnectionRate:
        """One TCP connection from client a to client b over the Internet path: the baseline."""
        p, t = self.internet_path(a, b), self.tcp
        return connection_rate(t.congestion_control, p.rtt_ms, p.loss, t.rwnd_bytes, t.mss_bytes,
                               p.bandwidth_mbps)
