"""What the relays' forwarding tables do to one session: the load on each hop and the paths.

Owns the reading of `RelayTable`s as the modelled relays execute them: from the ingress relay,
a frame follows the route the ingress weights pick; a `Split` entry sends a share of the frames
to each next hop, a `Replicate` entry a copy to every next hop, `LOCAL` delivers to the relay's
own subscribers. From that it derives the share of the session's rate each overlay hop carries
(the fluid model's weights) and, per subscriber datacenter, the paths a frame can take with
their probabilities (the latency model's input). It never changes a table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from stemflow.network import Edge
from stemflow.routing.plan import LOCAL, RelayTable, Split

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


def session_route(tables: Mapping[str, RelayTable], session: str, source: str) -> SessionRoute | None:
    """Follow `session` through the relays' tables from `source`; None if the ingress has no entry.

    Example: us-east1 splits 0.25 to us-west1 and 0.75 to asia-east1; us-west1 forwards to
    asia-east1, which delivers: hop_share = {(e, w): 0.25, (w, a): 0.25, (e, a): 0.75} and the
    sink asia-east1 has two paths with probabilities 0.75 and 0.25.
    """
    ingress = tables.get(source)
    routes = ingress.ingress.get(session) if ingress else None
    if not routes:
        return None
    share: dict[Edge, float] = defaultdict(float)
    paths: dict[str, list[tuple[tuple[str, ...], float]]] = defaultdict(list)
    for route, weight in routes:
        if weight > 0:
            _walk(tables, session, route, (source,), weight, share, paths)
    return SessionRoute(dict(share), {s: tuple(p[:MAX_PATHS_PER_SINK]) for s, p in paths.items()})


def _walk(tables: Mapping[str, RelayTable], session: str, route: int, visited: tuple[str, ...],
          prob: float, share: dict[Edge, float], paths: dict[str, list]) -> None:
    node = visited[-1]
    table = tables.get(node)
    entry = table.entries.get((session, route)) if table else None
    if entry is None:
        return  # a relay without an entry drops the frame (a table in transit); nothing carried
    if isinstance(entry, Split):
        branches = [(h, w) for h, w in entry.weights if w > 0]
    else:
        branches = [(h, 1.0) for h in entry.next_hops]
    for hop, w in branches:
        if hop == LOCAL:
            paths[node].append((visited, prob * (w if isinstance(entry, Split) else 1.0)))
        elif hop not in visited:
            p = prob * w if isinstance(entry, Split) else prob
            share[(node, hop)] += p
            _walk(tables, session, route, (*visited, hop), p, share, paths)
