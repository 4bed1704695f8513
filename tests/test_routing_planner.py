"""Re-planning: a seeded plan equals a fresh one, and `auto` switches with hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routing_nets import networks, unicast_demands

from stemflow.network import LinkState
from stemflow.routing import RoutingOptions, make_plan
from stemflow.routing.planner import Planner
from stemflow.routing.registry import AUTO_EXACT_UP_TO, AUTO_HYSTERESIS


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_a_re_plan_after_one_change_equals_a_fresh_plan(data):
    net = data.draw(networks(min_n=4, max_n=6))
    demands = data.draw(unicast_demands(net, max_sessions=8))
    planner = Planner()
    planner.plan(net, demands)
    edge = data.draw(st.sampled_from(sorted(net.links)))
    old = net.links[edge]
    changes = [
        (net, demands[:-1] or demands),
        (net.with_links({edge: LinkState(old.rtt_ms, old.bandwidth_mbps / 3)}), demands),
    ]
    for changed, ds in changes:
        again = planner.plan(changed, ds)
        fresh = make_plan(changed, ds, "multipath")
        for d in ds:
            assert again.sessions[d.session].rate_mbps == pytest.approx(
                fresh.sessions[d.session].rate_mbps, rel=1e-4, abs=1e-6)


def test_auto_keeps_its_choice_near_the_threshold():
    links = 1000
    at = AUTO_EXACT_UP_TO // links
    just_over, far_over = at + 1, int(at * (1 + AUTO_HYSTERESIS)) + 1
    just_under, far_under = at - 1, int(at * (1 - AUTO_HYSTERESIS)) - 1
    auto = RoutingOptions()
    assert auto.configured(just_over, links)[1].startswith("fast")
    assert auto.configured(just_over, links, previous="exact")[1].startswith("exact")
    assert auto.configured(far_over, links, previous="exact")[1].startswith("fast")
    assert auto.configured(just_under, links, previous="fast")[1].startswith("fast")
    assert auto.configured(far_under, links, previous="fast")[1].startswith("exact")
