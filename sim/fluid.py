"""Max-min fair rates of fluid flows over shared resources, by progressive filling.

Owns the rate solver and nothing else: resources (links, connection bundles, access hops) with a
capacity in Mbit/s, flows that load some resources with a weight each (a multipath session loads
each hop with its split share, a tree replicates with weight 1 on each edge) and have a cap of
their own (their TCP connection's model rate, a stream's bitrate). The allocation is the
weighted max-min fair one (Bertsekas & Gallager, *Data Networks*, 2nd ed., §6.5.2): every flow
either runs at its cap or crosses a saturated resource on which no flow runs faster.

Events are incremental. Adding, removing, re-routing or re-capping a flow and changing a
capacity first try an exact local update — a flow that leaves unsaturated resources, or joins
resources with room for its cap, changes no other flow's rate — and otherwise re-solve only the
flows coupled to what the event touched through saturated resources (unsaturated ones couple
nobody), growing that set if the new rates saturate a resource it shares with others. The
simulator, not this module, decides when events happen.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

SATURATION_TOLERANCE = 1e-9
"""A resource whose load is within this share of its capacity counts as saturated (float noise)."""
WEIGHT_EPSILON = 1e-12
"""A resource whose active flows' weights sum to less than this has no active flow left."""


@dataclass
class _Flow:
    resources: np.ndarray  # int64 indices into the resource arrays, sorted
    weights: np.ndarray  # float64, same length
    cap_mbps: float
    rate_mbps: float = 0.0
    res_list: list[int] = field(default_factory=list)  # the same, as Python lists for the filling
    w_list: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reroute(self.resources, self.weights)

    def reroute(self, resources: np.ndarray, weights: np.ndarray) -> None:
        self.resources, self.weights = resources, weights
        self.res_list, self.w_list = resources.tolist(), weights.tolist()


class RateSolver:
    """Resources and flows, and their max-min fair rates; `solve()` applies pending events.

    Example:
        >>> s = RateSolver()
        >>> link = s.add_resource(100.0)
        >>> a, b = s.add_flow([link], [1.0], math.inf), s.add_flow([link], [1.0], 30.0)
        >>> s.solve() == {a, b}, s.rate(a), s.rate(b)
        (True, 70.0, 30.0)
    """

    def __init__(self) -> None:
        self._capacity = np.zeros(0)
        self._load = np.zeros(0)
        self._users: list[set[int]] = []
        self._flows: dict[int, _Flow] = {}
        self._next_id = 0
        self._seed_flows: set[int] = set()
        self._seed_resources: set[int] = set()
        self._changed: set[int] = set()
        self.full_solves = 0
        self.local_updates = 0

    # -- resources ------------------------------------------------------------------------------

    def add_resource(self, capacity_mbps: float) -> int:
        r = len(self._users)
        self._capacity = np.append(self._capacity, float(capacity_mbps))
        self._load = np.append(self._load, 0.0)
        self._users.append(set())
        return r

    def capacity(self, r: int) -> float:
        return float(self._capacity[r])

    def load(self, r: int) -> float:
        return float(self._load[r])

    @property
    def loads(self) -> np.ndarray:
        return self._load

    @property
    def capacities(self) -> np.ndarray:
        return self._capacity

    def saturated(self, r: int) -> bool:
        return bool(self._load[r] >= self._capacity[r] * (1 - SATURATION_TOLERANCE) and self._users[r])

    def set_capacity(self, r: int, capacity_mbps: float) -> None:
        old, self._capacity[r] = float(self._capacity[r]), float(capacity_mbps)
        was_full = bool(self._users[r]) and self._load[r] >= old * (1 - SATURATION_TOLERANCE)
        if (not self._pending() and not was_full
                and self._load[r] <= capacity_mbps * (1 - SATURATION_TOLERANCE)):
            self.local_updates += 1  # nobody was held back here, and nobody is now
        else:
            self._seed_resources.add(r)

    # -- flows ----------------------------------------------------------------------------------

    def add_flow(self, resources: Sequence[int], weights: Sequence[float], cap_mbps: float) -> int:
        f = self._next_id
        self._next_id += 1
        res, w = _route(resources, weights)
        self._flows[f] = _Flow(res, w, float(cap_mbps))
        for r in res:
            self._users[r].add(f)
        if not self._pending() and math.isfinite(cap_mbps) and self._has_room(res, w, cap_mbps):
            self._set_rate(f, cap_mbps)
            self.local_updates += 1
        else:
            self._seed_flows.add(f)
        return f

    def remove_flow(self, f: int) -> None:
        flow = self._flows.pop(f)
        for r in flow.resources:
            self._users[r].discard(f)
        if flow.rate_mbps:
            self._load[flow.resources] -= flow.weights * flow.rate_mbps
        self._changed.discard(f)
        self._seed_flows.discard(f)
        if self._pending() or any(self._was_saturated(r, flow) for r in flow.resources):
            self._seed_resources.update(int(r) for r in flow.resources)
        else:
            self.local_updates += 1

    def set_cap(self, f: int, cap_mbps: float) -> None:
        flow = self._flows[f]
        old_cap, rate = flow.cap_mbps, flow.rate_mbps
        flow.cap_mbps = float(cap_mbps)
        if self._pending():
            self._seed_flows.add(f)
        elif rate < old_cap * (1 - SATURATION_TOLERANCE) and cap_mbps >= rate:
            self.local_updates += 1  # held back by a resource, which still holds it back
        elif (cap_mbps < rate and not any(self.saturated(r) for r in flow.resources)
              or cap_mbps > rate and self._has_room(flow.resources, flow.weights, cap_mbps - rate)):
            self._set_rate(f, cap_mbps)
            self.local_updates += 1
        else:
            self._seed_flows.add(f)

    def set_route(self, f: int, resources: Sequence[int], weights: Sequence[float]) -> None:
        """Move a flow onto other resources (a re-plan changed its paths or splits)."""
        flow = self._flows[f]
        old = set(int(r) for r in flow.resources)
        for r in flow.resources:
            self._users[r].discard(f)
        if flow.rate_mbps:
            self._load[flow.resources] -= flow.weights * flow.rate_mbps
        flow.reroute(*_route(resources, weights))
        for r in flow.resources:
            self._users[r].add(f)
        if flow.rate_mbps:
            self._load[flow.resources] += flow.weights * flow.rate_mbps
        self._seed_resources.update(old)
        self._seed_flows.add(f)

    def rate(self, f: int) -> float:
        return self._flows[f].rate_mbps

    def cap(self, f: int) -> float:
        return self._flows[f].cap_mbps

    def __contains__(self, f: int) -> bool:
        return f in self._flows

    def __len__(self) -> int:
        return len(self._flows)

    # -- solving --------------------------------------------------------------------------------

    def solve(self) -> set[int]:
        """Apply the pending events; return the flows whose rate changed.

        The flows re-solved are those the events touched and, transitively, every flow sharing a
        saturated resource with them: only saturated resources couple flows in a max-min
        allocation. The others keep their rates and their load is taken off the capacities. If
        the new rates saturate a resource that flows outside the set also use, those flows join
        and the set is solved again, so the result is exact.
        """
        if self._pending():
            expand_from = set(self._seed_resources)
            flows: set[int] = {f for f in self._seed_flows if f in self._flows}
            while True:
                flows = self._coupled(flows, expand_from)
                newly_full = self._fill(sorted(flows))
                self.full_solves += 1
                expand_from = {r for r in newly_full if any(g not in flows for g in self._users[r])}
                if not expand_from:
                    break
            self._seed_flows.clear()
            self._seed_resources.clear()
        changed, self._changed = self._changed, set()
        return {f for f in changed if f in self._flows}

    def solve_all(self) -> set[int]:
        """Re-solve every flow from scratch, as a solver without local updates would."""
        self._seed_flows.update(self._flows)
        return self.solve()

    def _pending(self) -> bool:
        return bool(self._seed_flows or self._seed_resources)

    def _has_room(self, res: np.ndarray, w: np.ndarray, extra_mbps: float) -> bool:
        if len(res) == 0:
            return True
        need = self._load[res] + w * extra_mbps
        return bool(np.all(need <= self._capacity[res] * (1 - SATURATION_TOLERANCE)))

    def _was_saturated(self, r: int, gone: _Flow) -> bool:
        before = self._load[r] + float(gone.weights[np.searchsorted(gone.resources, r)]) * gone.rate_mbps
        return bool(before >= self._capacity[r] * (1 - SATURATION_TOLERANCE))

    def _set_rate(self, f: int, rate: float) -> None:
        flow = self._flows[f]
        if rate != flow.rate_mbps:
            self._load[flow.resources] += flow.weights * (rate - flow.rate_mbps)
            flow.rate_mbps = rate
            self._changed.add(f)

    def _coupled(self, flows: set[int], resources: set[int]) -> set[int]:
        """`flows`, the users of `resources`, and every flow sharing a saturated resource with them."""
        flows = set(flows)
        seen_r: set[int] = set()
        stack_r = list(resources)
        stack_f = list(flows)
        capacity, load, users = self._capacity, self._load, self._users
        while stack_r or stack_f:
            while stack_f:
                for r in self._flows[stack_f.pop()].res_list:
                    if r not in seen_r and load[r] >= capacity[r] * (1 - SATURATION_TOLERANCE):
                        seen_r.add(r)
                        stack_r.append(r)
            while stack_r:
                r = stack_r.pop()
                seen_r.add(r)
                for g in users[r]:
                    if g not in flows:
                        flows.add(g)
                        stack_f.append(g)
        return flows

    def _fill(self, ids: list[int]) -> set[int]:
        """Progressive filling of a set of flows: raise all unfrozen rates together.

        Flows outside the set keep their rates; their load is taken off each capacity first.
        Returns the resources that were not saturated before and are now.

        Event-driven: the next event is the lowest level at which a resource saturates,
        (capacity - load of frozen flows) / weight of active flows, or at which an active flow
        reaches its cap; a heap keeps both. Freezing a flow updates only its own resources, so
        a component costs O(entries x log resources), not O(entries x bottlenecks).
        """
        flows = self._flows
        weight: dict[int, float] = {}
        inside: dict[int, float] = {}
        for f in ids:
            fl = flows[f]
            for r, w in zip(fl.res_list, fl.w_list, strict=True):
                weight[r] = weight.get(r, 0.0) + w
                inside[r] = inside.get(r, 0.0) + w * fl.rate_mbps
        full_before = {r for r in weight if self._load[r] >= self._capacity[r] * (1 - SATURATION_TOLERANCE)}
        outside = {r: max(0.0, float(self._load[r]) - inside[r]) for r in weight}
        frozen_load = dict(outside)
        capacity = self._capacity.tolist()
        version = dict.fromkeys(weight, 0)
        heap = [(((capacity[r] - outside[r]) / w) if w > 0 else math.inf, r, 0) for r, w in weight.items()]
        heapq.heapify(heap)
        by_cap = sorted((flows[f].cap_mbps, f) for f in ids)
        next_cap = 0
        active = set(ids)
        rate: dict[int, float] = {}
        level = 0.0

        def freeze(batch: list[tuple[int, float]]) -> None:
            """Fix these flows' rates; re-time each resource they load once, not once per flow."""
            touched: set[int] = set()
            for f, at in batch:
                active.discard(f)
                rate[f] = at
                fl = flows[f]
                for r, w in zip(fl.res_list, fl.w_list, strict=True):
                    weight[r] -= w
                    frozen_load[r] += w * at
                    touched.add(r)
            for r in touched:
                version[r] += 1
                if weight[r] > WEIGHT_EPSILON:
                    heapq.heappush(heap, ((capacity[r] - frozen_load[r]) / weight[r], r, version[r]))

        while active:
            while heap and (heap[0][2] != version[heap[0][1]] or weight[heap[0][1]] <= WEIGHT_EPSILON):
                heapq.heappop(heap)
            at_resource = heap[0][0] if heap else math.inf
            capped = []
            while next_cap < len(by_cap) and by_cap[next_cap][0] <= at_resource:
                cap, f = by_cap[next_cap]
                next_cap += 1
                if f in active:
                    capped.append((f, cap))
            if capped:
                level = max(level, capped[-1][1])
                freeze(capped)
                continue
            if not heap:  # no resource and no cap: cannot happen in the model
                freeze([(f, math.inf) for f in active])
                break
            level = max(level, at_resource)
            r = heapq.heappop(heap)[1]
            freeze([(f, min(level, flows[f].cap_mbps)) for f in self._users[r] if f in active])
        for f in ids:
            fl = flows[f]
            if rate[f] != fl.rate_mbps:
                self._changed.add(f)
                fl.rate_mbps = rate[f]
        for r, load in frozen_load.items():
            self._load[r] = load
        return {r for r in frozen_load if r not in full_before
                and frozen_load[r] >= capacity[r] * (1 - SATURATION_TOLERANCE)}


def _route(resources: Iterable[int], weights: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Merge repeated resources (a tree and a path may share an edge) and sort by index."""
    merged: dict[int, float] = {}
    for r, w in zip(resources, weights, strict=True):
        if w > 0:
            merged[int(r)] = merged.get(int(r), 0.0) + float(w)
    keys = sorted(merged)
    return np.array(keys, dtype=np.int64), np.array([merged[k] for k in keys], dtype=float)
