"""The `multicast` strategy: pack trees per multicast session, max-min fair over every tree.

Owns the strategy: multicast sessions are routed over trees, unicast ones as in `multipath`.
The cheapest tree under the LP's duals is `tree_pricing`'s (minimum Steiner arborescences,
`steiner`), the packing LP `fairshare`'s, the starting trees and the network-coding bound
`unicast`'s and `paths`'.
"""

from __future__ import annotations

from collections.abc import Sequence

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.plan import Plan
from stemflow.routing.registry import RoutingOptions, register
from stemflow.routing.unicast import fair_plan


@register("multicast")
def multicast(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Multicast: pack trees per multicast session by LP, max-min fair across sessions.

    Each multicast session starts with its shortest-path and widest trees; column generation
    then adds, between LP solves, the tree of least reduced cost under the link duals over the
    whole overlay (a minimum Steiner arborescence from the source to the sinks; with a latency
    budget, the cheapest whose every path to a sink meets it), until none improves the LP
    (`tree_pricing`). Tree rates are the variables, each tree loads each of its links once, and
    sessions are max-min fair (classes in order) over every tree; sessions whose trees pricing
    could not prove optimal (more than `steiner.EXACT_TERMINALS` sinks and not every
    datacenter, a budgeted search that gave up, `trees_per_session`) are named in
    `Plan.unproven`. A session whose budget no tree meets is named in `Plan.notes` and served
    over its shortest-path tree. Unicast sessions route as in `multipath`. Each session's
    `bound_mbps` is the network-coding bound, min over its sinks of the max-flow; the gap to it
    is what coding could add (trees alone cannot close it: Ahlswede et al.'s butterfly).

    References
    ----------
    Fractional Steiner tree packing: K. Jain, M. Mahdian, M. Salavatipour, "Packing Steiner
    trees", SODA 2003. Column generation: Dantzig & Wolfe, Oper. Res. 8(1), 1960. Network
    coding bound: R. Ahlswede, N. Cai, S.-Y. R. Li, R. W. Yeung, "Network information flow",
    IEEE Trans. Inf. Theory 46(4), 2000. Steiner trees: Dreyfus & Wagner, Networks 1(3), 1971;
    Edmonds, "Optimum branchings", J. Res. NBS 71B, 1967.
    """
    return fair_plan(net, demands, options, "multicast", price_trees=True)
