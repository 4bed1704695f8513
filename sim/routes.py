"""What the relays' forwarding decisions do to one session: the load on each hop and the paths.

Owns the fluid reading of the relays' decisions. It does not read tables itself: each modelled
relay is a `RelayCore`, the very object real relays run, and this module asks it what its data
path would do — the routes new frames take at the ingress and their shares, and per (session,
route) the next hops, shares of a split or copies of a tree, `LOCAL` for delivery, retired routes
included while they are kept. From that it derives the share of the session's rate each overlay
hop carries (the fluid model's weights) and, per subscriber datacenter, the paths a frame can
take with their probabilities (the latency model's input).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from stemflow.network import Edge
from stemflow.relay.core import RelayCore
from stemflow.routing.plan import LOCAL

MAX_PATHS_PER_SINK = 64
"""Enough for every path a 2-relay multipath plan uses; more would only slow latency sampling."""


@dataclass(frozen=True)
class SessionRoute:
    """A session as the tables carry it. `hop_share[e]` is the rate on e per unit session rate."""

    hop_share: Mapping[Edge, float]
    paths: Mapping[str, tuple[tuple[tuple[str, ...], float], ...]]
    """Per sink datacenter: (datacenters a frame visits, probability) pairs."""

    def reaches(self, sinks: tuple[str, ...]) -> bool:
        return all(self.paths.get(s) for s in sinks)


def session_route(cores: Mapping[str, RelayCore], session: str, source: str) -> SessionRoute | None:
    """Follow `session` through the relays' decisions from `source`; None if the ingress has no
    route for it.

    Example: us-east1 splits 0.25 to us-west1 and 0.75 to asia-east1; us-west1 forwards to
    asia-east1, which delivers: hop_share = {(e, w): 0.25, (w, a): 0.25, (e, a): 0.75} and the
    sink asia-east1 has two paths with probabilities 0.75 and 0.25.
    """
    ingress = cores.get(source)
    routes = ingress.ingress_shares(session) if ingress else []
    if not routes:
        return None
    share: dict[Edge, float] = defaultdict(float)
    paths: dict[str, list[tuple[tuple[str, ...], float]]] = defaultdict(list)
    for route, weight in routes:
        _walk(cores, session, route, (source,), weight, share, paths)
    return SessionRoute(dict(share), {s: tuple(p[:MAX_PATHS_PER_SINK]) for s, p in paths.items()})


def _walk(cores: Mapping[str, RelayCore], session: str, route: int, visited: tuple[str, ...],
          prob: float, share: dict[Edge, float], paths: dict[str, list]) -> None:
    node = visited[-1]
    core = cores.get(node)
    decided = core.branches(session, route) if core else None
    if decided is None:
        return  # a relay without an entry drops the frame (a table in transit); nothing carried
    branches, split = decided
    for hop, w in branches:
        p = prob * w if split else prob
        if hop == LOCAL:
            paths[node].append((visited, p))
        elif hop not in visited:
            share[(node, hop)] += p
            _walk(cores, session, route, (*visited, hop), p, share, paths)
