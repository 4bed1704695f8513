"""What a session asks of the overlay, in the terms routing works in: datacenters and rates.

Owns `Demand`, the routing view of a session (source and sink datacenters, the rate cap its
workload and access hops impose, its class and latency budget), and its derivation from a
scenario (the cap a workload imposes is its kind's, `stemflow.workloads`). Strategies read
demands; they never read workloads or clients directly, except `direct`, which needs the client
pair for the Internet path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stemflow.network import NetworkState
from stemflow.scenario import Priority, Scenario, Session
from stemflow.workloads.registry import kind_of


@dataclass(frozen=True)
class Demand:
    """A session as routing sees it. `max_rate_mbps` is inf for bulk transfers."""

    session: str
    source: str
    sinks: tuple[str, ...]
    publisher: str
    subscribers: tuple[str, ...]
    multicast: bool = False
    max_rate_mbps: float = math.inf
    priority: Priority = Priority.BULK
    latency_budget_ms: float | None = None
    topic: str = ""
    """The topic its frames travel under, when several sessions share one: a topic published at
    several relays is one session per ingress relay. Empty means the session's own name."""

    @property
    def wire_topic(self) -> str:
        return self.topic or self.session

    @property
    def delay_sensitive(self) -> bool:
        return self.priority is Priority.DELAY_SENSITIVE


def demand_of(session: Session, net: NetworkState) -> Demand:
    """A session's demand: sinks are its subscribers' datacenters, deduplicated, in order.

    The cap is what its workload can use (`WorkloadKind.rate_cap_mbps`: a live stream's
    bitrate, messages' offered load) and the access hops: each client reaches its relay over
    one TCP connection of its own.
    """
    clients = net.clients
    src = clients[session.publisher].datacenter
    sinks = tuple(dict.fromkeys(clients[s].datacenter for s in session.subscribers))
    cap = min([net.access_rate(session.publisher).rate_mbps]
              + [net.access_rate(s).rate_mbps for s in session.subscribers]
              + [kind_of(session.workload).rate_cap_mbps(session, session.workload, net)])
    return Demand(session.id, src, sinks, session.publisher, tuple(session.subscribers),
                  session.is_multicast, cap, session.priority, session.latency_budget_ms)


def demands_from_scenario(s: Scenario, net: NetworkState | None = None) -> list[Demand]:
    net = net or NetworkState.from_scenario(s)
    return [demand_of(x, net) for x in s.sessions]
