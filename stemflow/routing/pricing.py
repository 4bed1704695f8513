"""Exact path pricing for column generation: the cheapest overlay path under the LP's duals.

Owns the pricing step of unicast column generation. Given the duals of the current restricted LP
(one per link row, one per commodity row) and the stage's objective, it finds, for every unicast
commodity, the overlay path of least reduced cost among *all* simple paths of the overlay — a
shortest path with link lengths = link duals (plus the stage's delay cost), by Dijkstra from
every source at once (`scipy.sparse.csgraph`). A commodity with a latency budget gets the
cheapest path whose one-way delay meets the budget: a constrained shortest path, found exactly
by enumerating paths in order of price (Yen's algorithm, `networkx.shortest_simple_paths`) until
one meets the budget or none can improve. No candidate list, and so no hop limit: when this
finds no improving path, the LP is optimal over every path of the overlay.

It decides nothing about rates; `fairshare` runs the LPs and calls `improving` between solves.

Why Dijkstra is exact here: every route column has cost c_r = a_g x delay_r (a_g >= 0 set by the
stage) and one coefficient per link it crosses and one in its commodity's row, so its reduced
cost is sum_{e in r} (s y_e + a_g d_e) - (threshold of g), with s y_e >= 0 for optimal duals
(links are <= rows) and d_e > 0: non-negative additive link lengths.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
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
            yen = _LazyGraph(self.links, length + TIE_BREAK_PER_MS * self.rtt)
            simple = [(c, th) for c, th in group if c.budget_ms is None]
            if simple:
                new += self._unconstrained(length, simple, known, yen)
            for c, th in group:
                if c.budget_ms is not None:
                    r = self._next_cheapest(length, c, th, known, yen)
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
                       yen: _LazyGraph) -> list[Route]:
        dist, pred = self.shortest_trees(length, range(len(self.names)))
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
            elif state:  # the cheapest is fixed at 0: look further, in price order
                r = self._next_cheapest(length, c, threshold, known, yen)
                if r is not None:
                    out.append(r)
        return out

    def _next_cheapest(self, length: np.ndarray, c: PricedCommodity, threshold: float,
                       known: Mapping[tuple[int, tuple[Edge, ...]], bool],
                       yen: _LazyGraph) -> Route | None:
        """Paths in increasing price (Yen) until one is new, meets the budget and improves."""
        g = yen.graph
        if c.source not in g or c.sink not in g:
            return None
        paths = nx.shortest_simple_paths(g, c.source, c.sink, weight="weight")
        for hops in itertools.islice(paths, None):
            route = self.path_route(c.commodity, hops)
            price = self._price_of(length, route.edges)
            if price >= threshold - PRICE_TOLERANCE:
                return None  # every later path costs at least as much
            if (c.commodity, route.edges) in known:
                continue
            if c.budget_ms is None or route.delay_ms <= c.budget_ms:
                return route
        return None


class _LazyGraph:
    """The overlay as a networkx digraph under one set of link lengths, built on first use:
    most pricing rounds never need Yen's enumeration."""

    def __init__(self, links: Sequence[Edge], length: np.ndarray):
        self._links, self._length = links, length
        self._graph: nx.DiGraph | None = None

    @property
    def graph(self) -> nx.DiGraph:
        if self._graph is None:
            self._graph = nx.DiGraph()
            self._graph.add_weighted_edges_from(
                (a, b, w) for (a, b), w in zip(self._links, self._length.tolist(), strict=True))
        return self._graph
