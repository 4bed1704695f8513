"""Wire ids for routes that stay put while a route does, and are never reused while frames may
still be on the route they named.

Owns the controller's allocation of the 8-bit route id each frame carries. A route keeps its id
across re-plans as long as its forwarding entries are the same; a route that changes or
appears gets an id that no table has used for `ROUTE_ID_REUSE_S`. Relays keep the entries of a
route the newest table dropped for half that long, so frames already sent on it finish it:
make-before-break, with no loop, because every relay that knows an id knows the same route by it.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

ROUTE_IDS = 256
"""The wire's route field has 8 bits."""
ROUTE_ID_REUSE_S = 60.0
"""An id dropped by a table is not given to another route for this long: twice what relays keep
a dropped route (`RETIRED_ROUTE_KEEP_S`), so a table push that is late by up to the difference
still cannot make two relays read one id as two routes."""

log = logging.getLogger("stemflow.routing")


class RouteIdsExhausted(ValueError):
    """A topic needs more routes at once than the wire can name."""


class RouteIds:
    """The controller's memory of which id names which route, per topic; not thread-safe."""

    def __init__(self, reuse_after_s: float = ROUTE_ID_REUSE_S):
        self.reuse_after_s = reuse_after_s
        self._live: dict[str, dict[Hashable, int]] = {}
        self._retired: dict[str, dict[int, float]] = {}

    def allocate(self, wanted: Mapping[str, Sequence[Hashable]], now_s: float) -> dict[str, list[int]]:
        """Ids for every topic's routes (each route given by a hashable description of its
        entries), in order. Topics absent from `wanted` retire all their ids."""
        result: dict[str, list[int]] = {}
        for topic in set(self._live) | set(wanted):
            result[topic] = self._topic(topic, wanted.get(topic, ()), now_s)
        for topic in [t for t, ids in self._live.items() if not ids]:
            del self._live[topic]
        for topic in [t for t, ids in self._retired.items() if not ids]:
            del self._retired[topic]
        return {t: ids for t, ids in result.items() if t in wanted}

    def _topic(self, topic: str, routes: Sequence[Hashable], now_s: float) -> list[int]:
        prev = self._live.get(topic, {})
        retired = self._retired.setdefault(topic, {})
        for rid, at in list(retired.items()):
            if now_s - at >= self.reuse_after_s:
                del retired[rid]
        keep = {route: prev[route] for route in routes if route in prev}
        for route, rid in prev.items():
            if route not in keep:
                retired[rid] = now_s
        ids: list[int] = []
        live: dict[Hashable, int] = {}
        for route in routes:
            rid = keep.get(route)
            if rid is None or route in live:  # new, changed, or the same route twice
                rid = self._fresh(topic, set(keep.values()) | set(live.values()), retired)
            live[route] = rid
            ids.append(rid)
            retired.pop(rid, None)
        self._live[topic] = live
        return ids

    @staticmethod
    def _fresh(topic: str, taken: set[int], retired: dict[int, float]) -> int:
        for rid in range(ROUTE_IDS):
            if rid not in taken and rid not in retired:
                return rid
        free = [(at, rid) for rid, at in retired.items() if rid not in taken]
        if not free:
            raise RouteIdsExhausted(f"topic {topic}: more than {ROUTE_IDS} routes at once")
        at, rid = min(free)
        log.warning("topic %s: reusing route id %d dropped only recently (all %d in use)",
                    topic, rid, ROUTE_IDS)
        return rid
