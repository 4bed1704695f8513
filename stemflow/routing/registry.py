"""Routing strategies by name: the built-ins, and any `module:function` a scenario names.

Owns the `Strategy` signature, the lookup, and `RoutingOptions`, including the choice between
exact and fast max-min fairness by problem size (`RoutingOptions.configured`). A strategy is a
pure function `(net, demands, options) -> Plan`; adding one is writing such a function and
either decorating it with `@register("name")` or naming it in a scenario as
`package.module:function`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.plan import Plan

SOLVERS = ("highs", "cbc")
FAIRNESS = ("exact", "fast", "approx", "auto")
Fairness = Literal["exact", "fast", "approx", "auto"]

FAST_MAX_PATHS = 8
FAST_FAIR_LEVELS = 2
"""The fast configuration: at most 8 paths per commodity (the fastest first, then the starting
paths of `warmstart`, then the cheapest under the duals, over every path), 2 max-min levels per
class, then maximum
throughput: sessions above the second level get throughput, not fairness. Times and minimum
rates against exact are in docs/benchmarks.md, "Routing core"."""

AUTO_EXACT_UP_TO = 100_000
"""`fairness="auto"` runs exact max-min fairness up to this many commodity x link pairs (distinct
sessions as `unicast.group_demands` counts them, times directed overlay links), the fast
configuration above. The product sizes the LP every fair level re-solves (a row per link, a row
per commodity, its routes over those links) and predicted plan time better than sessions or
candidate paths alone did. Measured 2026-11-27 on the 2-core VM of docs/benchmarks.md, load
average 1.5-2.5 (another engineer's emulation ran alongside), synthetic meshes of
`benchmarks/routing.py`, 3 seeds per size, median of 3 plans each, HiGHS:

    commodities x links      DCs x sessions                 exact s      fast s
    32 000 -  56 000         20 x 100, 15 x 1000, 25 x 100  0.11 - 0.32  0.03 - 0.05
    79 000 -  94 000         20 x 300, 30 x 100, 40 x 60    0.25 - 0.54  0.03 - 0.08
    101 000 - 102 000        25 x 200                       0.41 - 0.69  0.06 - 0.08
    135 000 - 142 000        20 x 1000, 25 x 300            0.56 - 0.72  0.07 - 0.11
    145 000 - 154 000        40 x 100                       1.08 - 1.50  0.08 - 0.11
    222 000                  30 x 300                       1.22 - 1.51  0.13 - 0.18
    1 128 000                40 x 1000 (one plan each)      12.0         0.59

Up to the threshold an exact plan took at most 0.54 s; from 135 000 on never under 0.56 s.
These times are of the engine before path pricing (commit c134f9e, candidate lists); the
threshold has not been re-measured for the engine that prices every path."""

AUTO_FAST_UP_TO = 2_000_000
"""Above this many commodity x link pairs `auto` runs the approximate configuration (no LP,
`approx.py`) instead of the fast one. The fast configuration's LPs took 2-5 s at 40 x 1 000
(1.1 million pairs) and 38-61 s at 60 x 3 000 (8.5 million), and did not finish within 300 s at
100 x 10 000 (62 million); a controller re-plans every few seconds. The threshold sits between
the first two sizes; it was not measured closer than that."""

AUTO_HYSTERESIS = 0.2
"""Once `auto` has chosen, it switches only when the size crosses the threshold by 20%: at 40
datacenters one commodity is 1 560 pairs, 1.6% of the threshold, so about a dozen sessions
must come or go before the configuration flips, not one."""


@dataclass(frozen=True)
class RoutingOptions:
    """Knobs shared by the optimizing strategies."""

    solver: Literal["highs", "cbc"] = "highs"
    trees_per_session: int | None = None
    """At most this many trees tree pricing may add per multicast session, beyond its
    shortest-path and widest trees; None: as many as improve the LP, which makes the packing
    max-min fair over every tree (a session that reaches the cap is named in `Plan.unproven`)."""
    time_limit_s: float = 30.0
    max_paths: int | None = None
    """At most this many paths per unicast commodity enter the LP (the fastest first, then
    starting paths, then those pricing finds);
    None: as many as pricing finds improving, which makes the LP exact over every path."""
    fair_levels: int | None = None
    """Stop max-min filling after this many levels per class and give the rest to throughput
    (fewer LPs at scale); None is exact max-min fairness."""
    bounds: bool = True
    """Compute each session's bound (max-flow or network-coding); costs a max-flow per pair."""
    fairness: Fairness = "auto"
    """`exact`: the knobs above as given (by default exact max-min fairness over every
    candidate); `fast`: the fast configuration (`FAST_MAX_PATHS`, `FAST_FAIR_LEVELS`) where
    `max_paths` / `fair_levels` are unset; `approx`: max-min fair over fixed splits, no LP
    (`approx.py`); `auto`: exact up to `AUTO_EXACT_UP_TO` commodity x link pairs, fast up to
    `AUTO_FAST_UP_TO`, approx above. Which one ran is in `PlanStats.config`."""
    fixed_splits: bool = False
    """Set by the `approx` configuration: water-filling over each pair's multiplicative-weights
    split instead of LPs."""

    def configured(self, commodities: int, links: int,
                   previous: str = "") -> tuple[RoutingOptions, str]:
        """The options a plan over `commodities` x `links` runs with, and a label saying which.

        `previous` is the label of the last plan of the same overlay, if any: `auto` then keeps
        that configuration until the size leaves the band of `AUTO_HYSTERESIS` around the
        threshold, so one session more or less at the threshold does not flip it.

        Example
        -------
        >>> RoutingOptions().configured(723, 1560)[1]
        'fast (auto: 723 commodities x 1560 links > 100000)'
        """
        mode, size = self.fairness, ""
        if mode == "auto":
            pairs, bounds = commodities * links, []
            mode = "approx"
            for name, limit in (("exact", AUTO_EXACT_UP_TO), ("fast", AUTO_FAST_UP_TO)):
                # stay in `previous`'s configuration until the size leaves the band
                band = 1.0 if _rank(previous) == 3 else (
                    1 + AUTO_HYSTERESIS if _rank(previous) <= _rank(name) else
                    1 - AUTO_HYSTERESIS)
                bounds.append(limit * band)
                if pairs <= bounds[-1]:
                    mode = name
                    break
            size = (f"{commodities} commodities x {links} links "
                    f"{'<=' if mode == 'exact' else '>'} {bounds[-1 if mode != 'fast' else 0]:.0f}")
        if mode == "approx":
            name = "approx" + (f" (auto: {size})" if size else "")
            return replace(self, fixed_splits=True), name
        chosen = self
        if mode == "fast":
            chosen = replace(self, max_paths=self.max_paths or FAST_MAX_PATHS,
                             fair_levels=self.fair_levels or FAST_FAIR_LEVELS)
        knobs = (chosen.max_paths, chosen.fair_levels)
        if knobs == (None, None):
            name = "exact"
        elif knobs == (FAST_MAX_PATHS, FAST_FAIR_LEVELS):
            name = "fast"
        else:
            name = "custom: " + ", ".join(f"{k}={v}" for k, v in zip(
                ("max_paths", "fair_levels"), knobs, strict=True) if v is not None)
        if size:
            name += f" (auto: {size})" if name == mode else f" (auto chose {mode}: {size})"
        return chosen, name


def _rank(label: str) -> int:
    """Order of the configurations a label names (exact, fast, approx), 3 for none."""
    for i, name in enumerate(("exact", "fast", "approx")):
        if label.startswith(name):
            return i
    return 3


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
