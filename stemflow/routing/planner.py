"""Re-planning one overlay as it changes: the state kept from one plan to the next.

Owns `Planner`, which a controller keeps for the life of an overlay. Each `plan` call computes a
full, exact plan of the current snapshot (the result does not depend on the history), but starts
the multipath LP from the paths the last plan used for each (source, sink) pair, so column
generation has little left to find after one session joins or leaves or one link moves, and it
remembers which fairness configuration ran so that `auto` switches with hysteresis
(`RoutingOptions.configured`). Strategies other than `multipath` are planned by `make_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.plan import Plan, validate_plan
from stemflow.routing.registry import RoutingOptions, get_strategy
from stemflow.routing.unicast import fair_plan


@dataclass
class Planner:
    """Plans for one overlay, each seeded with the paths of the one before.

    Example
    -------
    >>> planner = Planner()
    >>> first = planner.plan(net, demands)                        # doctest: +SKIP
    >>> again = planner.plan(net, demands + [newcomer])           # doctest: +SKIP
    """

    strategy: str = "multipath"
    options: RoutingOptions = field(default_factory=RoutingOptions)
    validate: bool = True
    _paths: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = field(default_factory=dict,
                                                                      init=False)
    _config: str = field(default="", init=False)

    def plan(self, net: NetworkState, demands: Sequence[Demand]) -> Plan:
        """A plan of `demands` over `net`; the same as `make_plan` would give, found faster."""
        if self.strategy == "multipath":
            plan = fair_plan(net, demands, self.options, "multipath", seeds=self._paths,
                             previous_config=self._config)
        else:
            plan = get_strategy(self.strategy)(net, demands, self.options)
        if self.validate:
            validate_plan(plan, net, demands)
        self._remember(plan, demands)
        return plan

    def _remember(self, plan: Plan, demands: Sequence[Demand]) -> None:
        paths: dict[tuple[str, str], dict[tuple[str, ...], None]] = {}
        for d in demands:
            sp = plan.sessions[d.session]
            if d.multicast or not sp.paths:
                continue
            used = paths.setdefault((d.source, d.sinks[0]), {})
            used.update(dict.fromkeys(p.hops for p in sp.paths if len(p.hops) > 1))
        self._paths = {pair: tuple(hops) for pair, hops in paths.items()}
        self._config = plan.stats.config
