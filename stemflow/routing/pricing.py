"""Exact path pricing for column generation: the cheapest overlay path under the LP's duals.

Owns the pricing step of unicast column generation. Given the duals of the current restricted LP
(one per link row, one per commodity row) and the stage's objective, it finds, for every unicast
commodity, the overlay path of least reduced cost among *all* simple paths of the overlay — a
shortest path with link lengths = link duals (plus the stage's delay cost), by Dijkstra from
every source at once (`scipy.sparse.csgraph`). A commodity with a latency budget, or whose
cheapest path is a route fixed at 0, gets an improving path through one waypoint if one is new
and meets the budget, else the cheapest such path by enumerating paths in order of price (Yen's
algorithm, `paths_by_length`) until one qualifies or none can improve. No candidate list, and
so no hop limit: when this finds no improving path, the LP is optimal over every path of the
overlay.

It decides nothing about rates; `fairshare` runs the LPs and calls `improving` between solves.

Why Dijkstra is exact here: every route column has cost c_r = a_g x delay_r (a_g >= 0 set by the
stage) and one coefficient per link it crosses and one in its commodity's row, so its reduced
cost is sum_{e in r} (s y_e + a_g d_e) - (threshold of g), with s y_e >= 0 for optimal duals
(links are <= rows) and d_e > 0: non-negative additive link lengths.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from stemflow.network import Edge
from stemflow.routing.fairshare import HOP_COST_MS, PRICE_TOLERANCE, Objective, Route

TIE_BREAK_PER_MS = 1e-12
"""Added to each link's length per ms of RTT, so that among paths of equal price the fastest
wins and no link has length 0 (csgraph reads a 0 as "no link"). A 400 ms path adds 4e-10,
far below `PRICE_TOLERANCE`, so no pricing decision changes."""

@dataclass(frozen=True)
class PricedCommodity:
    """A unicast commodity as pricing sees it: index, endpoints, budget, delay weight."""

    commodity: int
    source: str
    sink: str
    budget_ms: float | None
    delay_weight: float


class PathPricing:
    """Cheapest paths under dual prices for a set of unicast commodities over one overlay.

    Parameters
    ----------
    names : the datacenters.
    links : the LP's link rows in order; `rtt_ms[i]` is the RTT of `links[i]`.
    commodities : the unicast commodities that take part in pricing.

    Example
    -------
    >>> pricing = PathPricing(names, links, rtt, [PricedCommodity(0, "a", "c", None, 1.0)])
    >>> pricing.improving(duals, crow, Objective("level"), known={})   # doctest: +SKIP
    [Route(commodity=0, edges=(('a', 'b'), ('b', 'c')), ...)]
    """

    def __init__(self, names: Sequence[str], links: Sequence[Edge], rtt_ms: Sequence[float],
                 commodities: Sequence[PricedCommodity]):
        self.names = tuple(names)
        self.pos = {n: i for i, n in enumerate(self.names)}
        self.links = list(links)
        self.rtt = np.asarray(rtt_ms, dtype=float)
        self.tail = np.array([self.pos[a] for a, _ in self.links], dtype=np.int64)
        self.head = np.array([self.pos[b] for _, b in self.links], dtype=np.int64)
        self.row_of = {e: i for i, e in enumerate(self.links)}
        self.delay_cost = self.rtt / 2.0 + HOP_COST_MS
        """A route's delay cost is the sum of this over its links (`Objective.cost`)."""
        self.commodities = list(commodities)

    def path_route(self, g: int, hops: Sequence[str]) -> Route:
        edges = tuple(zip(hops, hops[1:], strict=False))
        delay = sum(self.rtt[self.row_of[e]] for e in edges) / 2.0
        return Route(g, edges, float(delay), tuple(hops))

    def fastest(self, source: str, sinks: Sequence[str]) -> dict[str, tuple[str, ...] | None]:
        """The min-RTT path from `source` to each sink (None where there is none)."""
        dist, pred = self.shortest_trees(self.rtt, [self.pos[source]])
        return {t: self.walk(pred[0], self.pos[source], self.pos[t])
                if math.isfinite(dist[0, self.pos[t]]) else None for t in sinks}

    def improving(self, duals: np.ndarray, crow: int, objective: Objective,
                  known: Mapping[tuple[int, tuple[Edge, ...]], bool]) -> list[Route]:
        """The cheapest path of each commodity, where its reduced cost improves the LP.

        `duals` are the LP's row duals (HiGHS signs), link rows first; commodity g's row is
        `crow + g`. `known` maps (commodity, edges) of routes already in the LP to whether they
        are fixed at 0: a known free route is never returned (its reduced cost cannot improve;
        it only looks so by solver tolerance), a known fixed one is skipped and the next cheapest
        path taken, so the search stays exact.
        """
        sign = 1.0 if objective.maximize else -1.0
        link_len = np.clip(sign * duals[:len(self.links)], 0.0, None)
        by_alpha: dict[float, list[tuple[PricedCommodity, float]]] = {}
        for c in self.commodities:
            g = c.commodity
            y_g = float(duals[crow + g])
            gain = 1.0 if g in objective.spend else 0.0
            threshold = gain - y_g if objective.maximize else y_g
            if threshold <= PRICE_TOLERANCE:
                continue  # no path has a negative length: none can improve
            by_alpha.setdefault(self._alpha(objective, c), []).append((c, threshold))
        new: list[Route] = []
        for alpha, group in by_alpha.items():
            length = link_len + alpha * self.delay_cost
            yen = np.full((len(self.names), len(self.names)), np.inf)
            yen[self.tail, self.head] = length + TIE_BREAK_PER_MS * self.rtt
            trees = self.shortest_trees(length, range(len(self.names)))
            simple = [(c, th) for c, th in group if c.budget_ms is None]
            if simple:
                new += self._unconstrained(length, simple, known, yen, trees)
            for c, th in group:
                if c.budget_ms is not None:
                    r = self._next_cheapest(length, c, th, known, yen, trees)
                    if r is not None:
                        new.append(r)
        return new

    @staticmethod
    def _alpha(objective: Objective, c: PricedCommodity) -> float:
        if objective.kind == "delay":
            return c.delay_weight
        if objective.kind == "spend":
            return objective.delay_scale * c.delay_weight
        return 0.0

    def shortest_trees(self, length: np.ndarray,
                       sources: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Distances and predecessors from each of `sources` (indices) under link `length`."""
        n = len(self.names)
        w = length + TIE_BREAK_PER_MS * self.rtt + 1e-300  # strictly positive: 0 is "no link"
        graph = csr_matrix((w, (self.tail, self.head)), shape=(n, n))
        dist, pred = dijkstra(graph, directed=True, indices=list(sources),
                              return_predecessors=True)
        return np.atleast_2d(dist), np.atleast_2d(pred)

    def walk(self, pred: np.ndarray, s: int, t: int) -> tuple[str, ...]:
        """The hops from s to t in a predecessor row of `shortest_trees`."""
        hops = [t]
        while hops[-1] != s:
            hops.append(int(pred[hops[-1]]))
        return tuple(self.names[i] for i in reversed(hops))

    def _price_of(self, length: np.ndarray, edges: Sequence[Edge]) -> float:
        return float(sum(length[self.row_of[e]] for e in edges))

    def _unconstrained(self, length: np.ndarray, group: Sequence[tuple[PricedCommodity, float]],
                       known: Mapping[tuple[int, tuple[Edge, ...]], bool],
                       yen: np.ndarray, trees: tuple[np.ndarray, np.ndarray]) -> list[Route]:
        dist, pred = trees
        out = []
        for c, threshold in group:
            s, t = self.pos[c.source], self.pos[c.sink]
            limit = threshold - PRICE_TOLERANCE
            if not dist[s, t] < limit:
                continue
            route = self.path_route(c.commodity, self.walk(pred[s], s, t))
            state = known.get((c.commodity, route.edges))
            if state is None:
                if self._price_of(length, route.edges) < limit:
                    out.append(route)
            elif state:  # the cheapest is fixed at 0: look further
                r = self._next_cheapest(length, c, threshold, known, yen, trees)
                if r is not None:
                    out.append(r)
        return out

    def _next_cheapest(self, length: np.ndarray, c: PricedCommodity, threshold: float,
                       known: Mapping[tuple[int, tuple[Edge, ...]], bool], yen: np.ndarray,
                       trees: tuple[np.ndarray, np.ndarray]) -> Route | None:
        """A new path that meets the budget and improves, if there is one.

        First the paths through one waypoint v (the shortest s -> v, then the shortest v -> t,
        from `trees`), cheapest first: any of them that is new, simple, within the budget and
        improving will do, since column generation needs an improving column, not the best one.
        Only when none is, paths in increasing price (Yen) until one is or none can be: that
        enumeration alone proves that no path improves. In an exact plan at 40 x 1 000 the
        waypoints answered 249 of 822 calls.
        """
        found = self._via_waypoint(length, c, threshold, known, trees)
        if found is not None:
            return found
        for path in paths_by_length(yen, self.pos[c.source], self.pos[c.sink]):
            route = self.path_route(c.commodity, tuple(self.names[v] for v in path))
            price = self._price_of(length, route.edges)
            if price >= threshold - PRICE_TOLERANCE:
                return None  # every later path costs at least as much
            if (c.commodity, route.edges) in known:
                continue
            if c.budget_ms is None or route.delay_ms <= c.budget_ms:
                return route
        return None

    def _via_waypoint(self, length: np.ndarray, c: PricedCommodity, threshold: float,
                      known: Mapping[tuple[int, tuple[Edge, ...]], bool],
                      trees: tuple[np.ndarray, np.ndarray]) -> Route | None:
        dist, pred = trees
        s, t = self.pos[c.source], self.pos[c.sink]
        limit = threshold - PRICE_TOLERANCE
        via = dist[s] + dist[:, t]
        via[[s, t]] = np.inf
        for v in np.argsort(via, kind="stable").tolist():
            if not via[v] < limit:
                return None
            hops = self.walk(pred[s], s, v) + self.walk(pred[v], v, t)[1:]
            if len(set(hops)) < len(hops):
                continue
            route = self.path_route(c.commodity, hops)
            if (c.commodity, route.edges) in known or (
                    c.budget_ms is not None and route.delay_ms > c.budget_ms):
                continue
            if self._price_of(length, route.edges) < limit:
                return route
        return None


def paths_by_length(length: np.ndarray, s: int, t: int) -> Iterator[list[int]]:
    """Simple s -> t paths in order of total length, lazily (Yen's algorithm).

    `length[a, b]` is the length of link a -> b (inf: no link), non-negative. Each spur path is
    a dense Dijkstra in numpy: on a 40-datacenter mesh, the first 1-10 paths of a pair took
    0.55-0.57x the CPU time of networkx's `shortest_simple_paths`, which pricing used before.

    References: J. Y. Yen, "Finding the k shortest loopless paths in a network", Management
    Science 17(11), 1971.
    """
    first = _dense_shortest(length, s, t)
    if first is None:
        return
    found, seen, heap = [first], {tuple(first)}, []
    yield first
    while True:
        last = found[-1]
        for i in range(len(last) - 1):
            root = last[:i + 1]
            cut = length.copy()
            for p in found:
                if p[:i + 1] == root:
                    cut[p[i], p[i + 1]] = np.inf
            cut[root[:-1], :] = np.inf
            spur = _dense_shortest(cut, last[i], t)
            if spur is None:
                continue
            path = root[:-1] + spur
            if tuple(path) not in seen:
                seen.add(tuple(path))
                heapq.heappush(heap, (float(length[path[:-1], path[1:]].sum()), path))
        if not heap:
            return
        found.append(heapq.heappop(heap)[1])
        yield found[-1]


def _dense_shortest(length: np.ndarray, s: int, t: int) -> list[int] | None:
    """The shortest s -> t path under a dense matrix of link lengths (Dijkstra), or None."""
    n = len(length)
    dist = np.full(n, np.inf)
    dist[s] = 0.0
    pred = np.full(n, -1, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    while True:
        u = int(np.argmin(np.where(done, np.inf, dist)))
        if done[u] or not math.isfinite(dist[u]):
            return None
        if u == t:
            break
        done[u] = True
        step = dist[u] + length[u]
        better = (step < dist) & ~done
        dist[better] = step[better]
        pred[better] = u
    path = [t]
    while path[-1] != s:
        path.append(int(pred[path[-1]]))
    return path[::-1]
