"""Routing strategies by name: the built-ins, and any `module:function` a scenario names.

Owns the `Strategy` signature and the lookup. A strategy is a pure function
`(net, demands, options) -> Plan`; adding one is writing such a function and either decorating
it with `@register("name")` or naming it in a scenario as `package.module:function`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.plan import Plan

SOLVERS = ("highs", "cbc")


@dataclass(frozen=True)
class RoutingOptions:
    """Knobs shared by the optimizing strategies."""

    solver: Literal["highs", "cbc"] = "highs"
    max_relays: int = 2
    """Candidate unicast paths: direct, every 1-relay path and up to `k_paths` 2-relay paths."""
    k_paths: int = 8
    trees_per_session: int = 16
    """Trees column generation may add per multicast session, beyond its shortest-path and
    widest trees (16 closed the gap to the coding bound on the shipped and benchmark cases)."""
    time_limit_s: float = 30.0
    path_rank: Literal["rtt", "bottleneck", "mixed"] = "mixed"
    """Which 2-relay paths to keep: least RTT, largest bottleneck, or half of each."""
    max_paths: int | None = None
    """Keep at most this many candidates per pair (fastest and widest first); None keeps all."""
    all_paths: bool = False
    """Use every simple path as a candidate instead (exponential: small graphs and tests)."""
    fair_levels: int | None = None
    """Stop max-min filling after this many levels per class and give the rest to throughput
    (fewer LPs at scale); None is exact max-min fairness."""
    bounds: bool = True
    """Compute each session's bound (max-flow or network-coding); costs a max-flow per pair."""


Strategy = Callable[[NetworkState, Sequence[Demand], RoutingOptions], Plan]
_REGISTRY: dict[str, Strategy] = {}


class UnknownStrategy(ValueError):
    pass


def register(name: str) -> Callable[[Strategy], Strategy]:
    def deco(fn: Strategy) -> Strategy:
        _REGISTRY[name] = fn
        return fn
    return deco


def strategy_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """A registered strategy by name, or a `module:function` to import."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        mod, _, fn = name.partition(":")
        try:
            found = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise UnknownStrategy(f"cannot load strategy {name!r}: {e}") from None
        if not callable(found):
            raise UnknownStrategy(f"strategy {name!r} is not a function")
        return found
    raise UnknownStrategy(f"unknown strategy {name!r}; known: {', '.join(sorted(_REGISTRY))}, "
                          "or 'package.module:function'")


def _load_builtins() -> None:
    importlib.import_module("stemflow.routing.strategies")
