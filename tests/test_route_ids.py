"""Route ids: stable while a route stays, fresh when it changes, not reused while frames may
still travel on the route they named."""

from __future__ import annotations

import pytest

from stemflow.routing.route_ids import ROUTE_IDS, RouteIds, RouteIdsExhausted


def test_unchanged_routes_keep_their_ids_and_changed_ones_get_unused_ids():
    ids = RouteIds(reuse_after_s=60.0)
    assert ids.allocate({"t": ["r1", "r2"]}, 0.0) == {"t": [0, 1]}
    assert ids.allocate({"t": ["r2", "r3"]}, 1.0) == {"t": [1, 2]}  # r1's 0 is retired
    assert ids.allocate({"t": ["r3", "r4"]}, 2.0) == {"t": [2, 3]}  # 0 and 1 still retired
    assert ids.allocate({"t": ["r3", "r5"]}, 62.0) == {"t": [2, 0]}  # 0 free again after 60 s


def test_topics_have_separate_id_spaces_and_a_topic_that_goes_retires_its_ids():
    ids = RouteIds(reuse_after_s=10.0)
    assert ids.allocate({"a": ["x"], "b": ["x"]}, 0.0) == {"a": [0], "b": [0]}
    assert ids.allocate({"b": ["x"]}, 1.0) == {"b": [0]}
    assert ids.allocate({"a": ["y"]}, 2.0) == {"a": [1]}  # a's 0 was dropped at 1.0


def test_all_ids_in_use_is_an_error_and_a_full_space_reuses_the_oldest_retired_id():
    ids = RouteIds(reuse_after_s=60.0)
    with pytest.raises(RouteIdsExhausted):
        ids.allocate({"t": list(range(ROUTE_IDS + 1))}, 0.0)
    ids = RouteIds(reuse_after_s=60.0)
    ids.allocate({"t": list(range(ROUTE_IDS))}, 0.0)
    got = ids.allocate({"t": [*range(1, ROUTE_IDS), "new"]}, 1.0)["t"]
    assert got[-1] == 0  # the only id not in use, although retired only a second ago
