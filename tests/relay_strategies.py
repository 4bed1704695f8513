"""Fixed routing strategies for the relay tests, named to the controller as `module:function`.

Each is a pure `(net, demands, options) -> Plan` with a route the test can predict; rates are
nominal (1 Mbit/s), far below the configured links, so the shared validator accepts them.
"""

from __future__ import annotations

from collections.abc import Sequence

from stemflow.network import NetworkState
from stemflow.routing import Demand, Plan, RoutingOptions, SessionPlan
from stemflow.routing.plan import PathFlow, TreeFlow, compile_tables

RATE_MBPS = 1.0


def _plan(name: str, sessions: dict[str, SessionPlan], demands: Sequence[Demand]) -> Plan:
    return Plan(name, sessions, compile_tables(sessions, demands))


def _middles(net: NetworkState, d: Demand) -> list[str]:
    ends = {d.source, *d.sinks}
    return sorted(m for m in net.datacenters if m.startswith("m") and m not in ends)


def direct_hop(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Unicast straight to the sink's relay; multicast as a star from the source."""
    sessions = {}
    for d in demands:
        sinks = [s for s in d.sinks if s != d.source]
        if d.multicast:
            sessions[d.session] = SessionPlan(d.session, RATE_MBPS, trees=(
                TreeFlow(tuple((d.source, s) for s in sinks), RATE_MBPS),))
        else:
            sessions[d.session] = SessionPlan(d.session, RATE_MBPS,
                                              paths=(PathFlow((d.source, d.sinks[0]), RATE_MBPS),))
    return _plan("direct_hop", sessions, demands)


def via_middle(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Unicast through the first live relay named m*: three relays; direct when none is left."""
    sessions = {}
    for d in demands:
        mids = _middles(net, d)
        hops = (d.source, mids[0], d.sinks[0]) if mids else (d.source, d.sinks[0])
        sessions[d.session] = SessionPlan(d.session, RATE_MBPS, paths=(PathFlow(hops, RATE_MBPS),))
    return _plan("via_middle", sessions, demands)


def split_70_30(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Unicast over two paths, through m1 (70%) and m2 (30%)."""
    sessions = {}
    for d in demands:
        m1, m2 = _middles(net, d)[:2]
        sessions[d.session] = SessionPlan(d.session, RATE_MBPS, paths=(
            PathFlow((d.source, m1, d.sinks[0]), 0.7 * RATE_MBPS),
            PathFlow((d.source, m2, d.sinks[0]), 0.3 * RATE_MBPS)))
    return _plan("split_70_30", sessions, demands)


def two_trees(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Multicast over two trees, half the frames each: a star, and a chain through the sinks."""
    sessions = {}
    for d in demands:
        sinks = sorted(s for s in d.sinks if s != d.source)
        star = tuple((d.source, s) for s in sinks)
        chain = tuple(zip([d.source, *sinks], sinks, strict=False))
        sessions[d.session] = SessionPlan(d.session, RATE_MBPS, trees=(
            TreeFlow(star, RATE_MBPS / 2), TreeFlow(chain, RATE_MBPS / 2)))
    return _plan("two_trees", sessions, demands)


def detour_on_request(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Unicast through m1 — or through m2 while a session named "detour*" exists, so a test
    moves a running stream for good by opening such a session."""
    mid = "m2" if any(d.wire_topic.startswith("detour") for d in demands) else "m1"
    sessions = {d.session: SessionPlan(d.session, RATE_MBPS,
                                       paths=(PathFlow((d.source, mid, d.sinks[0]), RATE_MBPS),))
                for d in demands}
    return _plan("detour_on_request", sessions, demands)
