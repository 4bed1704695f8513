"""Initial columns for unicast column generation: the paths that spread each pair's traffic.

Owns `congestion_paths`. Column generation (`fairshare`, `pricing`) reaches the exact answer
from any starting set of columns; this module only chooses a better start. From one path per
pair, the first fairness level of a loaded overlay took about 590 LP solves at 40 datacenters x
1 000 sessions, each adding the next path of the one commodity at the bottleneck (its dual is
the only positive one). Here every pair's sessions are routed, in `ROUNDS` rounds, over the
shortest path under link lengths that grow exponentially with the load earlier rounds put on
each link relative to its capacity, the multiplicative-weights scheme of approximate max
concurrent flow; every path a round used becomes a starting column. It decides no rates.

References
----------
N. Garg, J. Koenemann, "Faster and simpler algorithms for multicommodity flow and other
fractional packing problems", SIAM J. Comput. 37(2), 2007. L. Fleischer, "Approximating
fractional multicommodity flow independent of the number of commodities", SIAM J. Discrete
Math. 13(4), 2000.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stemflow.routing.pricing import PathPricing

ROUNDS = 16
"""Rounds of routing: each adds at most one path per pair. At 40 x 1 000 (723 pairs) 16 rounds
gave 3 800 starting columns and cut the LP solves of a fast plan from about 600 to 14, of an
exact plan from about 690 to 100 (`benchmarks/routing.py` mesh); the rounds cost 0.06-0.15 s."""
STEP = 2.0
"""Each round multiplies a link's length by exp(STEP x its load / the busiest link's load, both
relative to capacity): the busiest link's length grows e^2 = 7.4-fold a round, so a pair leaves
a congested path within a round or two. 2 and 4 gave the same solve counts within 10%."""


def congestion_paths(pricing: PathPricing, capacity_mbps: np.ndarray,
                     sessions: Mapping[tuple[str, str], int],
                     rounds: int = ROUNDS) -> dict[tuple[str, str], tuple[tuple[str, ...], ...]]:
    """The paths multiplicative-weights routing of `sessions` uses, per (source, sink) pair.

    Parameters
    ----------
    pricing : the overlay (its datacenters, links in LP row order, RTTs).
    capacity_mbps : capacity of each of `pricing.links`.
    sessions : how many sessions each (source, sink) pair carries (source != sink).
    rounds : routing rounds; each pair's path of every round is kept, first-seen order.

    Example
    -------
    >>> congestion_paths(pricing, capacity, {("a", "c"): 3})     # doctest: +SKIP
    {('a', 'c'): (('a', 'c'), ('a', 'b', 'c'))}
    """
    return {pair: tuple(used) for pair, used in
            congestion_split(pricing, capacity_mbps, sessions, rounds).items()}


def congestion_split(pricing: PathPricing, capacity_mbps: np.ndarray,
                     sessions: Mapping[tuple[str, str], int], rounds: int = ROUNDS,
                     step: float = STEP) -> dict[tuple[str, str], dict[tuple[str, ...], float]]:
    """Per pair, each path multiplicative-weights routing used and the share of rounds it did.

    The shares are the averaged flow of the scheme (Garg & Koenemann): a split of each pair's
    traffic that approximates a maximum concurrent flow. `approx` allocates over it.
    """
    if not sessions:
        return {}
    n = len(pricing.names)
    link_of = np.full((n, n), -1, dtype=np.int64)
    link_of[pricing.tail, pricing.head] = np.arange(len(pricing.links))
    pairs = [(pricing.pos[s], pricing.pos[t]) for s, t in sessions]
    weight = np.array(list(sessions.values()), dtype=float)
    sources = sorted({s for s, _ in pairs})
    # per source: its pairs' indices and sinks, walked back to the source together
    mine = {s: np.array([k for k, (a, _) in enumerate(pairs) if a == s]) for s in sources}
    sinks = {s: np.array([pairs[k][1] for k in mine[s]]) for s in sources}
    capacity = np.asarray(capacity_mbps, dtype=float)
    length = 1.0 / np.maximum(capacity, 1e-9)
    counts: list[dict[bytes, float]] = [{} for _ in pairs]
    walks: dict[bytes, tuple[int, ...]] = {}
    done = 0
    for _ in range(rounds):
        dist, pred = pricing.shortest_trees(length, sources)
        load = np.zeros(len(capacity))
        for i, s in enumerate(sources):
            ks, at = mine[s], sinks[s].copy()
            ok = np.isfinite(dist[i, at])
            ks, at = ks[ok], at[ok]
            steps = [at]
            while (at != s).any():  # one hop back per step, every sink at once
                back = np.where(at != s, pred[i, np.maximum(at, 0)], s)
                np.add.at(load, link_of[back[at != s], at[at != s]], weight[ks[at != s]])
                at = back
                steps.append(at)
            hops = np.stack(steps, axis=1)  # sink first, then back to the source (repeated)
            for k, row in zip(ks.tolist(), hops, strict=True):
                key = row.tobytes()
                counts[k][key] = counts[k].get(key, 0.0) + 1.0
                if key not in walks:
                    walks[key] = tuple(dict.fromkeys(row.tolist()))[::-1]
        done += 1
        use = load / np.maximum(capacity, 1e-9)
        if use.max() <= 0:
            break
        length = length * np.exp(step * use / use.max())
    found: list[dict[tuple[str, ...], float]] = [{} for _ in pairs]
    for k, per in enumerate(counts):  # keys differ in padding, so a path may have several
        for key, c in per.items():
            hops = tuple(pricing.names[v] for v in walks[key])
            found[k][hops] = found[k].get(hops, 0.0) + c
    return {pair: {hops: used / done for hops, used in paths.items()}
            for pair, paths in zip(sessions, found, strict=True)}
