"""Path pricing's own parts: Yen's enumeration in numpy against networkx's."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stemflow.routing.pricing import paths_by_length


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 7), density=st.floats(0.3, 1.0), seed=st.integers(0, 10_000))
def test_paths_by_length_enumerates_as_networkx_does(n: int, density: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    length = np.where(rng.random((n, n)) < density, rng.uniform(0.1, 10.0, (n, n)), np.inf)
    np.fill_diagonal(length, np.inf)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from((a, b, float(length[a, b])) for a in range(n) for b in range(n)
                              if np.isfinite(length[a, b]))
    ours = list(itertools.islice(paths_by_length(length, 0, n - 1), 30))
    try:
        theirs = list(itertools.islice(nx.shortest_simple_paths(g, 0, n - 1, "weight"), 30))
    except nx.NetworkXNoPath:
        theirs = []
    assert ours == theirs  # continuous random lengths: no ties, so the order is unique


def test_paths_by_length_without_a_path() -> None:
    length = np.full((3, 3), np.inf)
    length[0, 1] = 1.0
    assert list(paths_by_length(length, 0, 2)) == []
