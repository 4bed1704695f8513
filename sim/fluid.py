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
connected component of flows that share resources with what the event touched. The simulator,
not this module, decides when events happen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SATURATION_TOLERANCE = 1e-9
"""A resource whose load is within this share of its capacity counts as saturated (float noise)."""


@dataclass
class _Flow:
    resources: np.ndarray  # int64 indices into the resource arrays
    weights: np.ndarray  # float64, same length
    cap_mbps: float
    rate_mbps: float = 0.0


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
        flow.resources, flow.weights = _route(resources, weights)
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
        """Apply the pending events; return the flows whose rate changed."""
        if self._pending():
            flows = self._component()
            if flows:
                self._fill(sorted(flows))
                self.full_solves += 1
            self._seed_flows.clear()
            self._seed_resources.clear()
        changed, self._changed = self._changed, set()
        return {f for f in changed if f in self._flows}

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

    def _component(self) -> set[int]:
        """Flows connected, through shared resources, to what the pending events touched."""
        flows: set[int] = {f for f in self._seed_flows if f in self._flows}
        seen_r: set[int] = set()
        stack_r = list(self._seed_resources)
        stack_f = list(flows)
        while stack_r or stack_f:
            while stack_f:
                for r in self._flows[stack_f.pop()].resources:
                    r = int(r)
                    if r not in seen_r:
                        seen_r.add(r)
                        stack_r.append(r)
            while stack_r:
                r = stack_r.pop()
                seen_r.add(r)
                for g in self._users[r]:
                    if g not in flows:
                        flows.add(g)
                        stack_f.append(g)
        return flows

    def _fill(self, ids: list[int]) -> None:
        """Progressive filling of one component: raise all unfrozen rates together."""
        flows = [self._flows[f] for f in ids]
        n = len(flows)
        counts = np.fromiter((len(fl.resources) for fl in flows), dtype=np.int64, count=n)
        cols_global = (np.concatenate([fl.resources for fl in flows]) if counts.sum()
                       else np.zeros(0, dtype=np.int64))
        w = np.concatenate([fl.weights for fl in flows]) if counts.sum() else np.zeros(0)
        rows = np.repeat(np.arange(n), counts)
        res_ids, cols = np.unique(cols_global, return_inverse=True)
        m = len(res_ids)
        caps = np.fromiter((fl.cap_mbps for fl in flows), dtype=float, count=n)
        capacity = self._capacity[res_ids].copy()
        rate = np.zeros(n)
        active = np.ones(n, dtype=bool)
        used = np.zeros(m)
        level = 0.0
        while active.any():
            weight_sum = np.bincount(cols, weights=w * active[rows], minlength=m)
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.where(weight_sum > 0, (capacity - used) / weight_sum, np.inf)
            step = min(float(room.min()) if m else math.inf, float((caps[active] - level).min()))
            if not math.isfinite(step):
                rate[active] = np.inf  # uncapped flows on no resource: cannot happen in the model
                break
            step = max(step, 0.0)
            level += step
            used += step * weight_sum
            full = np.zeros(m, dtype=bool)
            if m:
                full = (weight_sum > 0) & (used >= capacity * (1 - SATURATION_TOLERANCE))
            frozen = active & (caps <= level * (1 + SATURATION_TOLERANCE))
            if full.any():
                hit = np.zeros(n, dtype=bool)
                hit[rows[full[cols]]] = True
                frozen |= active & hit
            if not frozen.any():  # float noise: freeze the tightest resource's flows
                tight = np.zeros(n, dtype=bool)
                tight[rows[cols == int(np.argmin(room))]] = True
                frozen = active & tight
            rate[frozen] = np.minimum(level, caps[frozen])
            active &= ~frozen
        for f, fl, r in zip(ids, flows, rate.tolist(), strict=True):
            if r != fl.rate_mbps:
                self._changed.add(f)
                fl.rate_mbps = r
        # Every user of these resources is in the component: their loads are the component's.
        self._load[res_ids] = np.bincount(cols, weights=w * rate[rows], minlength=m)

def _route(resources: Iterable[int], weights: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Merge repeated resources (a tree and a path may share an edge) and sort by index."""
    merged: dict[int, float] = {}
    for r, w in zip(resources, weights, strict=True):
        if w > 0:
            merged[int(r)] = merged.get(int(r), 0.0) + float(w)
    keys = sorted(merged)
    return np.array(keys, dtype=np.int64), np.array([merged[k] for k in keys], dtype=float)
