"""Fluid in simulated time: transfers move bytes at the solver's rates and finish on time.

Owns the bridge between the rate solver (`sim.fluid`, which knows rates but not time) and SimPy:
each transfer's progress, the instant its last byte leaves, re-scheduling when rates change, and
the time integrals of each resource's load behind link utilization. What the resources stand for
is `sim.model`'s business.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import simpy
from stemflow.sim.fluid import RateSolver

BYTES_DONE_TOLERANCE = 1.0
"""A transfer with less than one byte left is complete (float residue of the fluid clock)."""


@dataclass(eq=False)
class Transfer:
    """Bytes moving at the solver's rate; `done` fires when the last byte has left the source."""

    flow: int
    size_bytes: float
    done: simpy.Event
    sent_bytes: float = 0.0
    rate_mbps: float = 0.0
    since_s: float = 0.0
    version: int = 0

    def sent_at(self, now_s: float) -> float:
        return min(self.size_bytes, self.sent_bytes + self.rate_mbps * 1e6 / 8 * (now_s - self.since_s))


class Fluid:
    """The solver in simulated time: keeps each transfer's progress and wakes it when it ends.

    Callers change flows and capacities, then call `commit()` once for the instant: rates are
    re-solved, progress is settled at the old rates, and finish times are rescheduled.
    """

    def __init__(self, env: simpy.Environment, solver: RateSolver | None = None):
        self.env = env
        self.solver = solver or RateSolver()
        self._transfers: dict[int, Transfer] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._wake = env.event()
        self._last_s = 0.0
        self.busy_s = np.zeros(0)
        self.carried = np.zeros(0)
        self.offered = np.zeros(0)
        self.events = 0
        env.process(self._clock())

    # -- resources ------------------------------------------------------------------------------

    def resource(self, capacity_mbps: float) -> int:
        self._advance()
        self.busy_s, self.carried, self.offered = (np.append(a, 0.0) for a in
                                                   (self.busy_s, self.carried, self.offered))
        return self.solver.add_resource(capacity_mbps)

    def set_capacity(self, r: int, capacity_mbps: float) -> None:
        self._advance()
        self.solver.set_capacity(r, capacity_mbps)

    # -- transfers ------------------------------------------------------------------------------

    def start(self, resources: Sequence[int], weights: Sequence[float], cap_mbps: float,
              size_bytes: float) -> Transfer:
        self._advance()
        f = self.solver.add_flow(resources, weights, cap_mbps)
        t = Transfer(f, size_bytes, self.env.event(), since_s=self.env.now)
        self._transfers[f] = t
        return t

    def stop(self, t: Transfer) -> None:
        self._advance()
        if t.flow in self._transfers:
            self._settle(t)
            del self._transfers[t.flow]
            self.solver.remove_flow(t.flow)

    def reroute(self, t: Transfer, resources: Sequence[int], weights: Sequence[float]) -> None:
        if t.flow in self._transfers:
            self._advance()
            self.solver.set_route(t.flow, resources, weights)

    def recap(self, t: Transfer, cap_mbps: float) -> None:
        if t.flow in self._transfers:
            self._advance()
            self.solver.set_cap(t.flow, cap_mbps)

    def extend(self, t: Transfer, nbytes: float) -> bool:
        """The source sends `nbytes` more (bytes lost on the way, sent again end to end): the
        transfer ends that much later at its rate. False when it has ended already."""
        if t.flow not in self._transfers or nbytes <= 0:
            return False
        self._settle(t)
        t.size_bytes += nbytes
        t.version += 1
        if t.rate_mbps > 0:
            left = t.size_bytes - t.sent_bytes
            heapq.heappush(self._heap, (self.env.now + left * 8 / (t.rate_mbps * 1e6), t.flow, t.version))
        if not self._wake.triggered:
            self._wake.succeed()
        return True

    def commit(self) -> None:
        """Re-solve what the changes of this instant touched; reschedule the finish times."""
        self.events += 1
        for f in self.solver.solve():
            t = self._transfers[f]
            self._settle(t)
            t.rate_mbps = self.solver.rate(f)
            t.version += 1
            if t.rate_mbps > 0:
                left = t.size_bytes - t.sent_bytes
                heapq.heappush(self._heap, (self.env.now + left * 8 / (t.rate_mbps * 1e6), f, t.version))
        if not self._wake.triggered:
            self._wake.succeed()

    def _settle(self, t: Transfer) -> None:
        now = self.env.now
        t.sent_bytes = t.sent_at(now)
        t.since_s = now

    def _advance(self) -> None:
        """Integrate each resource's carried and offered rate up to now (for utilization)."""
        now = self.env.now
        dt = now - self._last_s
        if dt <= 0:
            return
        loads, caps = self.solver.loads, self.solver.capacities
        busy = loads > 0
        self.busy_s += busy * dt
        self.carried += loads * dt
        self.offered += np.where(busy, caps, 0.0) * dt
        self._last_s = now

    def _clock(self):
        env = self.env
        while True:
            while self._heap and (self._heap[0][1] not in self._transfers
                                  or self._transfers[self._heap[0][1]].version != self._heap[0][2]):
                heapq.heappop(self._heap)
            self._wake = env.event()
            if self._heap:
                yield env.any_of([env.timeout(max(0.0, self._heap[0][0] - env.now)), self._wake])
            else:
                yield self._wake
            finished = []
            while self._heap and self._heap[0][0] <= env.now:
                _, f, version = heapq.heappop(self._heap)
                t = self._transfers.get(f)
                if t is None or t.version != version:
                    continue
                if t.size_bytes - t.sent_at(env.now) <= BYTES_DONE_TOLERANCE:
                    finished.append(t)
            for t in finished:
                self.stop(t)
            if finished:
                self.commit()
                for t in finished:
                    t.done.succeed(env.now)
