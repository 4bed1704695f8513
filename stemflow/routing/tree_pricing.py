"""Exact tree pricing for column generation: the cheapest multicast tree under the LP's duals.

Owns the pricing step of multicast column generation, as `pricing` owns it for unicast paths.
Given the duals of the current restricted LP, it finds, for every multicast commodity, the tree
of least reduced cost among *all* trees from its source reaching its sinks: a minimum Steiner
arborescence with link lengths = link duals (`steiner`), by Dreyfus-Wagner up to
`steiner.EXACT_TERMINALS` sinks and by Edmonds' algorithm when every datacenter is a sink (a
spanning arborescence). A commodity with a latency budget gets the cheapest tree whose every
path to a sink meets it. When this finds no improving tree, the LP is optimal over every tree.
Above the exact limits (more sinks, or a budgeted search that gave up) the tree is the
Takahashi-Matsuyama heuristic's or the least-delay one, and the commodity is recorded in
`unproven`, with the reason, for the plan to report.

It decides nothing about rates; `fairshare` runs the LPs and calls `improving` between solves.

Why a Steiner tree is the right pricing problem: a tree column loads each of its links once
and its commodity's row once, and costs 0 in a fairness level, so its reduced cost is
sum_{e in T} y_e - (threshold of g) with y_e >= 0 (links are <= rows): additive link lengths.
The throughput stage of a truncated filling also counts the tree's delay to its farthest
sink, which is not additive; there the tree is priced with the sum of its links' delays, an
upper bound, and kept only if its true reduced cost improves. The last stage (least delay
among equally fair allocations) prices no trees: it chooses among those the fairness levels
found, as before this pricer. Priced like the throughput stage it took 163 of 226 LP solves and
82 of 109 s of HiGHS time in a 40-datacenter plan of 50 sessions x 8 sinks (docs/routing.md),
for a choice that changes no rate. Neither stage is claimed exact over every tree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from stemflow.network import Edge
from stemflow.routing import steiner
from stemflow.routing.fairshare import HOP_COST_MS, PRICE_TOLERANCE, Objective, Route
from stemflow.routing.steiner import (
    SteinerTree,
    min_steiner_arborescence,
    shortest_paths,
    tree_height,
)

TIE_BREAK_PER_MS = 1e-12
"""Added to each link's length per ms of RTT, so that among trees of equal price the fastest
wins; as `pricing.TIE_BREAK_PER_MS`, far below `PRICE_TOLERANCE`."""


@dataclass(frozen=True)
class PricedTree:
    """A multicast commodity as pricing sees it: index, source, sinks, budget, delay weight,
    and how many trees pricing may add (None: as many as improve)."""

    commodity: int
    source: str
    sinks: tuple[str, ...]
    budget_ms: float | None
    delay_weight: float
    max_trees: int | None = None


class TreePricing:
    """Cheapest trees under dual prices for a set of multicast commodities over one overlay.

    Parameters
    ----------
    names : the datacenters.
    links : the LP's link rows in order; `rtt_ms[i]` is the RTT of `links[i]`.
    commodities : the multicast commodities that take part in pricing.

    Example
    -------
    >>> pricing = TreePricing(names, links, rtt, [PricedTree(0, "a", ("b", "c"), None, 1.0)])
    >>> pricing.improving(duals, crow, Objective("level"), known={})   # doctest: +SKIP
    [Route(commodity=0, edges=(('a', 'b'), ('a', 'c')), ...)]
    """

    def __init__(self, names: Sequence[str], links: Sequence[Edge], rtt_ms: Sequence[float],
                 commodities: Sequence[PricedTree]):
        self.names = tuple(names)
        self.pos = {n: i for i, n in enumerate(self.names)}
        self.links = list(links)
        self.row_of = {e: i for i, e in enumerate(self.links)}
        n = len(self.names)
        self.tail = np.array([self.pos[a] for a, _ in self.links], dtype=np.int64)
        self.head = np.array([self.pos[b] for _, b in self.links], dtype=np.int64)
        self.rtt = np.asarray(rtt_ms, dtype=float)
        self.delay = np.full((n, n), np.inf)
        self.delay[self.tail, self.head] = self.rtt / 2.0
        self.delay_cost = self.rtt / 2.0 + HOP_COST_MS
        self.commodities = list(commodities)
        self.added: dict[int, int] = {}
        self.unproven: dict[int, str] = {}
        """Commodities some pricing call could not prove optimal, and why."""

    def improving(self, duals: np.ndarray, crow: int, objective: Objective,
                  known: Mapping[tuple[int, tuple[Edge, ...]], bool]) -> list[Route]:
        """The cheapest tree of each commodity, where its reduced cost improves the LP.

        `duals` are the LP's row duals (HiGHS signs), link rows first; commodity g's row is
        `crow + g`. A tree already known (in the LP, or fixed at 0) is not returned: a live
        one cannot improve (it only looks so by solver tolerance), and a fixed one that
        improves is put back by `fairshare._Columns.revive`, which prices every fixed route
        before an LP counts as optimal, so skipping it keeps the search exact.
        """
        if objective.kind == "delay":
            return []  # the last stage chooses among the trees the levels found: see above
        sign = 1.0 if objective.maximize else -1.0
        link_len = np.clip(sign * duals[:len(self.links)], 0.0, None)
        new: list[Route] = []
        graphs: dict[float, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}
        for c in self.commodities:
            g = c.commodity
            if c.max_trees is not None and self.added.get(g, 0) >= c.max_trees:
                self.unproven.setdefault(g, f"tree pricing stopped at {c.max_trees} trees "
                                            "(trees_per_session)")
                continue
            y_g = float(duals[crow + g])
            gain = 1.0 if g in objective.spend else 0.0
            threshold = gain - y_g if objective.maximize else y_g
            if threshold <= PRICE_TOLERANCE:
                continue  # no tree has a negative price: none can improve
            alpha = _alpha(objective, c)
            if alpha not in graphs:  # one all-pairs search per distinct length, not per session
                n = len(self.names)
                dense = np.full((n, n), np.inf)
                dense[self.tail, self.head] = (link_len + alpha * self.delay_cost
                                               + TIE_BREAK_PER_MS * self.rtt)
                graphs[alpha] = (dense, shortest_paths(dense))
            tree = self.cheapest(*graphs[alpha], c, threshold - PRICE_TOLERANCE)
            if tree is None:
                continue
            route = self.route(g, c, tree.edges)
            if (g, route.edges) in known:
                continue
            price = float(link_len[[self.row_of[e] for e in route.edges]].sum()) + alpha * (
                route.delay_ms + HOP_COST_MS * len(route.edges))
            if price < threshold - PRICE_TOLERANCE:
                self.added[g] = self.added.get(g, 0) + 1
                new.append(route)
        return new

    def cheapest(self, dense: np.ndarray, paths: tuple[np.ndarray, np.ndarray], c: PricedTree,
                 cutoff: float) -> SteinerTree | None:
        """The cheapest tree of `c` under the n x n link lengths `dense` (whose
        `steiner.shortest_paths` are `paths`), within its budget."""
        n = len(self.names)
        root = self.pos[c.source]
        terms = sorted({self.pos[t] for t in c.sinks} - {root})
        if len(terms) == n - 1:
            tree = _spanning(dense, root)
            if c.budget_ms is None or _fits(tree, self.delay, root, c.budget_ms):
                return tree
        tree = min_steiner_arborescence(dense, root, terms, self.delay, c.budget_ms, cutoff,
                                        paths)
        if tree is not None and not tree.exact:
            limit = steiner.EXACT_TERMINALS
            why = (f"{len(terms)} sinks > {limit}, the exact limit" if len(terms) > limit
                   else "the budgeted search gave up (steiner.MAX_LABELS)")
            self.unproven.setdefault(c.commodity, f"trees by heuristic: {why}")
        return tree

    def route(self, g: int, c: PricedTree, edges: Sequence[tuple[int, int]]) -> Route:
        """The LP column of a tree given by index pairs; its delay is to the farthest sink."""
        named = tuple(sorted((self.names[a], self.names[b]) for a, b in edges))
        return Route(g, named, tree_height(edges, self.delay, self.pos[c.source]))



def _alpha(objective: Objective, c: PricedTree) -> float:
    if objective.kind == "delay":
        return c.delay_weight
    if objective.kind == "spend":
        return objective.delay_scale * c.delay_weight
    return 0.0


def _spanning(length: np.ndarray, root: int) -> SteinerTree:
    """The min-cost spanning arborescence (Edmonds 1967; exact, polynomial): when every
    datacenter is a sink the Steiner tree spans them all, at any number of sinks."""
    g = nx.DiGraph()
    n = len(length)
    g.add_nodes_from(range(n))
    tails, heads = np.nonzero(np.isfinite(length))
    g.add_weighted_edges_from((int(a), int(b), float(length[a, b]))
                              for a, b in zip(tails, heads, strict=True) if b != root)
    tree = nx.minimum_spanning_arborescence(g, attr="weight", preserve_attrs=False)
    edges = tuple(sorted(tree.edges))
    return SteinerTree(edges, float(sum(length[a, b] for a, b in edges)), True)


def _fits(tree: SteinerTree, delay: np.ndarray, root: int, budget: float) -> bool:
    return tree_height(tree.edges, delay, root) <= budget + 1e-9 * max(1.0, budget)

