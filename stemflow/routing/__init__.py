"""The routing and scheduling core: pure functions from (network state, demands) to a `Plan`.

`make_plan` is the one entry point drivers call: it looks the strategy up, runs it, and checks
the result with the shared validator, so a broken strategy fails loudly, not silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand, demand_of, demands_from_scenario
from stemflow.routing.plan import (
    LOCAL,
    Plan,
    PlanError,
    PlanStats,
    RelayTable,
    Replicate,
    SessionPlan,
    Split,
    compile_tables,
    validate_plan,
)
from stemflow.routing.registry import RoutingOptions, get_strategy, register, strategy_names


def make_plan(net: NetworkState, demands: Sequence[Demand], strategy: str,
              options: RoutingOptions | None = None, version: int = 0,
              validate: bool = True) -> Plan:
    """Run `strategy` and validate its plan (tables and capacities)."""
    plan = get_strategy(strategy)(net, demands, options or RoutingOptions())
    if version:
        plan = replace(plan, version=version, tables=compile_tables(plan.sessions, demands, version))
    if validate:
        validate_plan(plan, net, demands)
    return plan


__all__ = [
    "LOCAL", "Demand", "Plan", "PlanError", "PlanStats", "RelayTable", "Replicate",
    "RoutingOptions", "SessionPlan", "Split", "demand_of", "demands_from_scenario",
    "get_strategy", "make_plan", "register", "strategy_names", "validate_plan",
]
