"""Minimum-cost Steiner arborescences over a small overlay: exact, budgeted, or heuristic.

Owns the combinatorial step of multicast tree pricing: given non-negative link lengths on a
dense digraph, a root and a set of terminals, the cheapest directed tree from the root that
reaches every terminal. Exact by Dreyfus-Wagner dynamic programming over terminal subsets up to
`EXACT_TERMINALS` terminals; with a per-terminal delay budget, exact by the same recursion over
Pareto labels (cost, height); above those limits, the Takahashi-Matsuyama shortest-path
heuristic, and the result says it is not proven minimal. It knows nothing about LPs or duals:
`tree_pricing` turns duals into lengths and trees into columns.

Matrices are dense n x n numpy arrays indexed by node, `inf` where there is no link; trees are
sorted tuples of (tail, head) index pairs.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EXACT_TERMINALS = 10
"""Dreyfus-Wagner runs up to this many terminals: O(3^k n + 2^k n^2) work, in numpy passes
over one subset size at a time. Sessions here have at most about 10 sinks; the time per tree
at k = 4-12 on 40-datacenter meshes is in docs/routing.md, "Multicast tree pricing"."""

MAX_LABELS = 200_000
"""The budgeted recursion gives up after creating this many (cost, height) labels, and the
least-delay tree answers instead (not proven minimal). On a 40-datacenter mesh of
`benchmarks/routing.py` with random lengths on 30% of the links, a budget of 1.3x the least
delay and no cutoff, 3-8 sinks took 1-150 ms and 10 sinks gave up here after 0.33-0.41 s
(2026-12-07, 2-core VM, single runs). In pricing, labels that cost the commodity's dual or
more are cut as well (`cutoff`)."""


@dataclass(frozen=True)
class SteinerTree:
    """A tree from the root, its total length, and whether it is proven the cheapest."""

    edges: tuple[tuple[int, int], ...]
    cost: float
    exact: bool


def shortest_paths(length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs distances and next hops (Floyd-Warshall; zero lengths allowed, inf = no link).

    `nxt[u, v]` is the first hop of a shortest u -> v path (-1: none). n <= 100 here, so the
    n numpy passes over an n x n matrix cost well under a millisecond at n = 40.
    """
    n = len(length)
    dist = np.array(length, dtype=float)
    np.fill_diagonal(dist, 0.0)
    nxt = np.where(np.isfinite(dist), np.arange(n)[None, :], -1)
    for k in range(n):
        via = dist[:, k:k + 1] + dist[k:k + 1, :]
        better = via < dist
        dist = np.where(better, via, dist)
        nxt = np.where(better, nxt[:, k:k + 1], nxt)
    return dist, nxt


def walk(nxt: np.ndarray, u: int, v: int) -> list[tuple[int, int]]:
    """The edges of the shortest u -> v path in a next-hop matrix of `shortest_paths`."""
    edges = []
    while u != v:
        w = int(nxt[u, v])
        edges.append((u, w))
        u = w
    return edges


def min_steiner_arborescence(length: np.ndarray, root: int, terminals: Sequence[int],
                             delay: np.ndarray | None = None, budget: float | None = None,
                             cutoff: float = math.inf,
                             paths: tuple[np.ndarray, np.ndarray] | None = None) -> SteinerTree | None:
    """The cheapest tree from `root` reaching every terminal, each within `budget` if given.

    Parameters
    ----------
    length : n x n link lengths, >= 0, inf where there is no link.
    root, terminals : node indices (the root among the terminals is ignored).
    delay, budget : n x n link delays and the most any root -> terminal path may sum to.
    cutoff : with a budget, trees costing this much or more may be reported as None (the
        caller only wants cheaper ones), which prunes the search.
    paths : `shortest_paths(length)`, if the caller has it.

    Returns
    -------
    The tree, or None when no tree meets the budget (or, proven by the budgeted search, none
    that does costs less than `cutoff`). `exact` is False when the terminals exceed
    `EXACT_TERMINALS` (the Takahashi-Matsuyama tree) or, with a budget that tree or the
    unbudgeted optimum misses, when the budgeted search gave up at `MAX_LABELS` or could not
    run: then the least-delay tree is returned, the one tree sure to meet the budget if any does.

    Unbudgeted and up to `EXACT_TERMINALS` terminals this is Dreyfus-Wagner: the cheapest tree
    rooted at v spanning S either branches at v or leaves v along a shortest path to the node
    where it next branches or meets a terminal, so cost(S, v) = min_w d(v, w) + min over splits
    S = S1 + S2 of cost(S1, w) + cost(S2, w). With a budget, the unbudgeted optimum is returned
    when it meets the budget (the budget only removes trees); otherwise `_budgeted` runs the
    same recursion over labels.

    Example
    -------
    >>> inf = math.inf
    >>> length = np.array([[inf, 1, 1, inf], [inf, inf, inf, 1], [inf, inf, inf, 1],
    ...                    [inf, inf, inf, inf]])
    >>> min_steiner_arborescence(length, 0, [3]).edges
    ((0, 1), (1, 3))

    References
    ----------
    S. E. Dreyfus, R. A. Wagner, "The Steiner problem in graphs", Networks 1(3), 1971.
    H. Takahashi, A. Matsuyama, "An approximate solution for the Steiner problem in graphs",
    Math. Japonica 24, 1980.
    """
    terms = sorted(set(terminals) - {root})
    dist, nxt = paths if paths is not None else shortest_paths(length)
    if any(not math.isfinite(dist[root, t]) for t in terms):
        return None
    if not terms:
        return SteinerTree((), 0.0, True)
    exact = len(terms) <= EXACT_TERMINALS
    found = (_dreyfus_wagner if exact else _shortest_path_heuristic)(dist, nxt, root, terms)
    tree = _as_tree(found, length, length if delay is None else delay, root, terms, exact)
    if budget is None or delay is None or tree_height(tree.edges, delay, root) <= budget:
        return tree
    if exact:
        budgeted = _budgeted(length, delay, root, terms, budget, cutoff)
        if budgeted is None:
            return None
        if budgeted is not _GAVE_UP:
            return _as_tree(budgeted, length, delay, root, terms, True)
    dist, nxt = shortest_paths(delay)
    fastest = {e for t in terms for e in walk(nxt, root, t)}
    tree = _as_tree(fastest, length, delay, root, terms, False)
    if tree_height(tree.edges, delay, root) > budget:  # the least-delay tree: none meets it
        return None
    return tree


# ---------------------------------------------------------------------------------------------
# Dreyfus-Wagner


@lru_cache(maxsize=16)
def _layers(k: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]:
    """For each subset size 2..k: the masks, and every (mask, submask) split as flat arrays.

    A split takes the submasks holding the mask's lowest terminal (each unordered split once);
    `starts` marks where each mask's splits begin, for `np.minimum.reduceat`.
    """
    out = []
    by_size: dict[int, list[int]] = {}
    for m in range(1, 1 << k):
        by_size.setdefault(m.bit_count(), []).append(m)
    for size in range(2, k + 1):
        masks = by_size[size]
        pm, ps, starts = [], [], []
        for m in masks:
            low = m & -m
            starts.append(len(pm))
            rest = m ^ low
            sub = rest
            while True:  # every submask of rest, with low added; skip the whole mask
                if sub != rest:
                    pm.append(m)
                    ps.append(sub | low)
                if sub == 0:
                    break
                sub = (sub - 1) & rest
        out.append((np.array(masks), np.array(pm), np.array(ps), np.array(starts)))
    return tuple(out)


def _dreyfus_wagner(dist: np.ndarray, nxt: np.ndarray, root: int,
                    terms: Sequence[int]) -> set[tuple[int, int]]:
    """The edges of a cheapest structure from root reaching every terminal (may share nodes;
    `_as_tree` turns it into an arborescence of no greater cost)."""
    k = len(terms)
    n = len(dist)
    cost = np.full((1 << k, n), np.inf)
    branch = np.full((1 << k, n), np.inf)
    for i, t in enumerate(terms):
        cost[1 << i] = dist[:, t]
    for masks, pm, ps, starts in _layers(k):
        merged = np.minimum.reduceat(cost[ps] + cost[pm ^ ps], starts, axis=0)
        branch[masks] = merged
        cost[masks] = (dist[None, :, :] + merged[:, None, :]).min(axis=2)
    edges: set[tuple[int, int]] = set()
    stack = [((1 << k) - 1, root)]
    while stack:
        mask, u = stack.pop()
        if mask & (mask - 1) == 0:
            edges.update(walk(nxt, u, terms[mask.bit_length() - 1]))
            continue
        v = int(np.argmin(dist[u] + branch[mask]))
        edges.update(walk(nxt, u, v))
        low, rest = mask & -mask, mask ^ (mask & -mask)
        subs = [s | low for s in _submasks(rest) if s != rest]
        best = min(subs, key=lambda s: cost[s, v] + cost[mask ^ s, v])
        stack += [(best, v), (mask ^ best, v)]
    return edges


def _submasks(m: int) -> list[int]:
    out, sub = [], m
    while True:
        out.append(sub)
        if sub == 0:
            return out
        sub = (sub - 1) & m


# ---------------------------------------------------------------------------------------------
# Budgeted: Dreyfus-Wagner over Pareto labels


@dataclass(frozen=True)
class _Label:
    """A structure rooted at a node reaching a terminal set: its cost, its height (the largest
    delay from the node to one of its terminals), and how it was built, to read its edges."""

    cost: float
    height: float
    edge: tuple[int, int] | None = None
    parts: tuple[_Label, ...] = ()


_GAVE_UP = object()


def _budgeted(length: np.ndarray, delay: np.ndarray, root: int, terms: Sequence[int],
              budget: float, cutoff: float) -> set[tuple[int, int]] | None | object:
    """Dreyfus-Wagner over labels: the cheapest structure whose every root -> terminal walk
    meets the budget, None if none costs less than `cutoff`, `_GAVE_UP` past `MAX_LABELS`.

    Each (terminal subset, node) keeps the labels no other label beats in both cost and height:
    a dominated label can be replaced by its dominator in any tree, which then costs no more and
    reaches each terminal no later. A label at v is dropped when its height plus the least delay
    root -> v exceeds the budget, or its cost reaches `cutoff` (lengths are >= 0, so neither
    can recover). The recursion is the unbudgeted one, with `shortest path to w` replaced by a
    label-setting search that extends labels backwards one link at a time.

    References: J. M. Jaffe, "Algorithms for finding paths with multiple constraints",
    Networks 14, 1984 (Pareto labels); Dreyfus & Wagner 1971.
    """
    n = len(length)
    k = len(terms)
    from_root = shortest_paths(delay)[0][root]
    into = [[(u, float(length[u, v]), float(delay[u, v])) for u in range(n)
             if math.isfinite(length[u, v])] for v in range(n)]
    labels: dict[int, list[list[_Label]]] = {}
    created = 0
    slack = budget * 1e-12

    def insert(front: list[_Label], new: _Label) -> bool:
        for old in front:
            if old.cost <= new.cost and old.height <= new.height:
                return False
        front[:] = [o for o in front if not (new.cost <= o.cost and new.height <= o.height)]
        front.append(new)
        return True

    for mask in range(1, 1 << k):
        fronts: list[list[_Label]] = [[] for _ in range(n)]
        if mask & (mask - 1) == 0:
            fronts[terms[mask.bit_length() - 1]].append(_Label(0.0, 0.0))
        else:
            low, rest = mask & -mask, mask ^ (mask & -mask)
            for sub in _submasks(rest):
                if sub == rest:
                    continue
                a, b = labels[sub | low], labels[mask ^ (sub | low)]
                for v in range(n):
                    for la in a[v]:
                        for lb in b[v]:
                            c, h = la.cost + lb.cost, max(la.height, lb.height)
                            if c < cutoff and h + from_root[v] <= budget + slack:
                                created += 1
                                insert(fronts[v], _Label(c, h, None, (la, lb)))
        heap = [(lab.cost, id(lab), v, lab) for v in range(n) for lab in fronts[v]]
        heapq.heapify(heap)
        while heap:
            _, _, v, lab = heapq.heappop(heap)
            if lab not in fronts[v]:
                continue
            for u, w, d in into[v]:
                c, h = lab.cost + w, lab.height + d
                if c >= cutoff or h + from_root[u] > budget + slack:
                    continue
                new = _Label(c, h, (u, v), (lab,))
                created += 1
                if insert(fronts[u], new):
                    heapq.heappush(heap, (c, id(new), u, new))
            if created > MAX_LABELS:
                return _GAVE_UP
        labels[mask] = fronts
    best = min(labels[(1 << k) - 1][root], key=lambda lab: lab.cost, default=None)
    if best is None:
        return None
    edges: set[tuple[int, int]] = set()
    stack = [best]
    while stack:
        lab = stack.pop()
        if lab.edge is not None:
            edges.add(lab.edge)
        stack += lab.parts
    return edges


# ---------------------------------------------------------------------------------------------
# Heuristic, and turning a structure into a tree


def _shortest_path_heuristic(dist: np.ndarray, nxt: np.ndarray, root: int,
                             terms: Sequence[int]) -> set[tuple[int, int]]:
    """Takahashi-Matsuyama: attach the terminal nearest to the tree by a shortest path, repeat.
    Within 2(1 - 1/k) of optimal on symmetric lengths."""
    in_tree = [root]
    edges: set[tuple[int, int]] = set()
    left = set(terms)
    while left:
        todo = sorted(left)
        sub = dist[np.ix_(in_tree, todo)]
        i, j = np.unravel_index(int(np.argmin(sub)), sub.shape)
        path = walk(nxt, in_tree[i], todo[j])
        edges.update(path)
        for _, b in path:
            if b not in in_tree:
                in_tree.append(b)
            left.discard(b)
    return edges


def _as_tree(edges: set[tuple[int, int]], length: np.ndarray, delay: np.ndarray, root: int,
             terms: Sequence[int], exact: bool) -> SteinerTree:
    """An arborescence inside a structure: the least-delay tree over its edges, pruned to the
    terminals. It uses only edges of the structure, so it costs no more, and it reaches each
    terminal no later than the structure's own walk does."""
    out: dict[int, list[int]] = {}
    for a, b in edges:
        out.setdefault(a, []).append(b)
    best, parent, heap = {root: 0.0}, {}, [(0.0, root)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > best[u]:
            continue
        for v in out.get(u, ()):
            nd = d + float(delay[u, v])
            if nd < best.get(v, math.inf):
                best[v], parent[v] = nd, u
                heapq.heappush(heap, (nd, v))
    tree: set[tuple[int, int]] = set()
    for t in terms:
        node = t
        while node != root:
            tree.add((parent[node], node))
            node = parent[node]
    ordered = tuple(sorted(tree))
    return SteinerTree(ordered, float(sum(length[a, b] for a, b in ordered)), exact)


def tree_height(edges: Sequence[tuple[int, int]], delay: np.ndarray, root: int) -> float:
    """The largest delay from the root to any node of a tree."""
    children: dict[int, list[int]] = {}
    for a, b in edges:
        children.setdefault(a, []).append(b)
    worst, stack = 0.0, [(root, 0.0)]
    while stack:
        u, d = stack.pop()
        worst = max(worst, d)
        stack += [(v, d + float(delay[u, v])) for v in children.get(u, ())]
    return worst
