"""Routing decisions as values: per-session flows, per-relay forwarding tables, and their checks.

Owns `Plan` (what a strategy decided, with its solve times), the two forwarding entry types —
`Replicate(next_hops)` for tree branches and `Split(weights)` for multipath — the compilation of
session flows into per-relay tables, and the validator that both tests and the controller run:
tables are loop-free, splits sum to 1, every subscriber is reached, no link is over capacity.

Table layout. A relay's table maps (topic, route) to an entry. A unicast session has one route,
its multipath flow split hop by hop; a multicast session has one route per tree, replicated
along the tree. The ingress relay picks the route of each new frame by the topic's `ingress`
weights and writes it into the frame. The next hop `LOCAL` means "deliver to this relay's own
subscribers".

Route ids. A topic published at several relays is one session per ingress relay; all its
routes share the topic's id space. By default ids are numbered from 0 (a unicast session's
route) or 1 (a multicast session's trees). The controller passes a `RouteIds` instead, which
keeps a route's id while the route stays the same and gives a changed route an id unused for a
while, so relays can let frames finish the route they were sent on (make-before-break).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stemflow.network import Edge, NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.route_ids import ROUTE_IDS, RouteIds, RouteIdsExhausted

LOCAL = "@local"
"""Next hop meaning local delivery to the subscribers attached to this relay."""

WEIGHT_TOLERANCE = 1e-6
"""Splits and route weights must sum to 1 within this (LP solutions carry rounding)."""
CAPACITY_TOLERANCE = 1e-6
"""Relative slack allowed on link capacities (LP feasibility tolerance is 1e-7)."""


@dataclass(frozen=True)
class Replicate:
    """Send a copy of each frame to every next hop (a multicast tree branch)."""

    next_hops: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    """Send each frame to one next hop, chosen so the shares follow `weights` (multipath)."""

    weights: tuple[tuple[str, float], ...]

    @property
    def next_hops(self) -> tuple[str, ...]:
        return tuple(h for h, w in self.weights if w > 0)


Entry = Replicate | Split


@dataclass(frozen=True)
class RelayTable:
    """One relay's forwarding table, as the controller pushes it."""

    relay: str
    version: int
    entries: Mapping[tuple[str, int], Entry]
    ingress: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    rates: Mapping[tuple[str, int], float] = field(default_factory=dict)
    """Planned Mbit/s each (topic, route) brings into this relay: it sizes the credit windows
    the relay grants its upstream neighbours (`stemflow.relay.credit.window_bytes`)."""


@dataclass(frozen=True)
class PathFlow:
    """Rate carried on one overlay path (a sequence of datacenters)."""

    hops: tuple[str, ...]
    rate_mbps: float

    @property
    def edges(self) -> list[Edge]:
        return list(zip(self.hops, self.hops[1:], strict=False))


@dataclass(frozen=True)
class TreeFlow:
    """Rate carried on one multicast tree (directed edges away from the source)."""

    edges: tuple[Edge, ...]
    rate_mbps: float


@dataclass(frozen=True)
class SessionPlan:
    """What a strategy gives a session. `via_internet` marks the direct baseline (no relays)."""

    session: str
    rate_mbps: float
    paths: tuple[PathFlow, ...] = ()
    trees: tuple[TreeFlow, ...] = ()
    bound_mbps: float | None = None
    via_internet: bool = False

    def link_load(self) -> dict[Edge, float]:
        load: dict[Edge, float] = defaultdict(float)
        for p in self.paths:
            for e in p.edges:
                load[e] += p.rate_mbps
        for t in self.trees:
            for e in t.edges:
                load[e] += t.rate_mbps
        return dict(load)


@dataclass(frozen=True)
class PlanStats:
    """Where a decision's time went, and which solver made it."""

    solver: str = "none"
    paths_s: float = 0.0
    build_s: float = 0.0
    solve_s: float = 0.0
    config: str = ""
    """Which configuration ran (`RoutingOptions.configured`), e.g. "exact" or "fast (auto: ...)";
    empty for strategies that have none."""

    @property
    def total_s(self) -> float:
        return self.paths_s + self.build_s + self.solve_s


@dataclass(frozen=True)
class Plan:
    """A strategy's decision for a set of sessions over one network snapshot."""

    strategy: str
    sessions: Mapping[str, SessionPlan]
    tables: Mapping[str, RelayTable]
    stats: PlanStats = PlanStats()
    version: int = 0
    notes: Mapping[str, str] = field(default_factory=dict)
    """Sessions the strategy could not route as asked, and why (no path at all, or no path
    within the latency budget): `stemflow plan` prints them, `--strict` fails on them."""
    unproven: Mapping[str, str] = field(default_factory=dict)
    """Sessions whose routes pricing could not prove optimal over every tree, and why (too many
    sinks for the exact Steiner tree, a budgeted search that gave up, a cap on trees): their
    rates are max-min fair over the trees found, which may fall short of fair over every tree."""

    def link_load(self) -> dict[Edge, float]:
        load: dict[Edge, float] = defaultdict(float)
        for sp in self.sessions.values():
            for e, r in sp.link_load().items():
                load[e] += r
        return dict(load)


class PlanError(ValueError):
    """A plan or table that breaks an invariant; lists every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("invalid plan: " + "; ".join(self.problems[:5])
                         + (f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""))


# ---------------------------------------------------------------------------------------------
# Compilation


def _acyclic_edge_flow(paths: Iterable[PathFlow]) -> dict[Edge, float]:
    """Sum path rates per edge, then cancel flow cycles so per-hop splits cannot loop.

    Cancelling a cycle removes the same rate from each of its edges: every node's net flow, and
    so the delivered rate, is unchanged, and no link carries more than before.
    """
    flow: dict[Edge, float] = defaultdict(float)
    for p in paths:
        for e in p.edges:
            flow[e] += p.rate_mbps
    while True:
        cycle = _find_cycle([e for e, r in flow.items() if r > 0])
        if cycle is None:
            return {e: r for e, r in flow.items() if r > 0}
        least = min(flow[e] for e in cycle)
        for e in cycle:
            flow[e] -= least


def _find_cycle(edges: Sequence[Edge]) -> list[Edge] | None:
    """The edges of one directed cycle among `edges`, or None (iterative depth-first search;
    networkx's find_cycle took 5 of the 7 s of compiling 10 000 sessions' tables)."""
    out: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        out[a].append(b)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in list(out):
        if root in state:
            continue
        stack = [(root, iter(out[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, nexts = stack[-1]
            for nxt in nexts:
                seen = state.get(nxt)
                if seen == 1:
                    loop = path[path.index(nxt):] + [nxt]
                    return list(zip(loop, loop[1:], strict=False))
                if seen is None:
                    state[nxt] = 1
                    stack.append((nxt, iter(out.get(nxt, ()))))
                    path.append(nxt)
                    break
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


def compile_tables(sessions: Mapping[str, SessionPlan], demands: Sequence[Demand],
                   version: int = 0, route_ids: RouteIds | None = None,
                   now_s: float = 0.0) -> dict[str, RelayTable]:
    """Per-relay forwarding tables that realize the session plans (`route_ids`: see above)."""
    # Each route: (topic, source, weight, {relay: entry}, is a tree); ids come once all are known.
    routes: list[tuple[str, str, float, dict[str, Entry], bool]] = []
    inflow: list[dict[str, float]] = []  # per route: the planned Mbit/s into each relay
    for d in demands:
        sp = sessions.get(d.session)
        if sp is None or sp.via_internet or sp.rate_mbps <= 0:
            continue
        if d.multicast or sp.trees:
            trees = [t for t in sp.trees if t.rate_mbps > 0]
            total = sum(t.rate_mbps for t in trees)
            for tree in trees:
                children: dict[str, list[str]] = defaultdict(list)
                for a, b in tree.edges:
                    children[a].append(b)
                nodes = {d.source} | {n for e in tree.edges for n in e}
                routes.append((d.wire_topic, d.source, tree.rate_mbps / total, {
                    n: Replicate(tuple(children[n]) + ((LOCAL,) if n in d.sinks else ()))
                    for n in sorted(nodes)}, True))
                inflow.append({b: tree.rate_mbps for _, b in tree.edges})
        else:
            flow = _acyclic_edge_flow(sp.paths)
            out: dict[str, dict[str, float]] = defaultdict(dict)
            for (a, b), r in flow.items():
                out[a][b] = r
            hops: dict[str, Entry] = {}
            for n, nexts in sorted(out.items()):
                total = sum(nexts.values())
                hops[n] = Split(tuple((h, r / total) for h, r in sorted(nexts.items())))
            hops[d.sinks[0]] = Replicate((LOCAL,))
            routes.append((d.wire_topic, d.source, 1.0, hops, False))
            into: dict[str, float] = defaultdict(float)
            for (_, b), r in flow.items():
                into[b] += r
            inflow.append(dict(into))
    ids = _route_ids(routes, route_ids, now_s)
    entries: dict[str, dict[tuple[str, int], Entry]] = defaultdict(dict)
    ingress: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for rid, (topic, source, weight, hops, _), into in zip(ids, routes, inflow, strict=True):
        for n, entry in hops.items():
            entries[n][(topic, rid)] = entry
        for n, r in into.items():
            rates[n][(topic, rid)] = r
        ingress[source][topic].append((rid, weight))
    relays = set(entries) | set(ingress)
    return {r: RelayTable(r, version, dict(entries[r]),
                          {t: tuple(w) for t, w in ingress[r].items()}, dict(rates[r]))
            for r in sorted(relays)}


def _route_ids(routes: Sequence[tuple[str, str, float, dict[str, Entry], bool]],
               route_ids: RouteIds | None, now_s: float) -> list[int]:
    wanted: dict[str, list[Hashable]] = defaultdict(list)
    for topic, source, _, hops, _ in routes:
        wanted[topic].append((source, frozenset(hops.items())))
    if route_ids is not None:
        try:
            given = route_ids.allocate(wanted, now_s)
        except RouteIdsExhausted as e:
            raise PlanError([str(e)]) from None
    else:  # numbered in order: 0 for a unicast route, trees from 1
        given = defaultdict(list)
        for topic, *_, tree in routes:
            ids = given[topic]
            ids.append(max(ids[-1] + 1 if ids else 0, 1 if tree else 0))
            if ids[-1] >= ROUTE_IDS:
                raise PlanError([f"topic {topic}: more than {ROUTE_IDS} routes at once"])
    taken = {t: iter(v) for t, v in given.items()}
    return [next(taken[r[0]]) for r in routes]


# ---------------------------------------------------------------------------------------------
# Validation


def table_problems(tables: Mapping[str, RelayTable], demands: Sequence[Demand]) -> list[str]:
    """Every broken invariant of a set of tables, as sentences; empty when all is well."""
    problems: list[str] = []
    for d in demands:
        src_table = tables.get(d.source)
        routes = src_table.ingress.get(d.wire_topic) if src_table else None
        if not routes:
            continue  # not carried by relays (direct baseline or zero rate)
        if abs(sum(w for _, w in routes) - 1.0) > WEIGHT_TOLERANCE:
            problems.append(f"session {d.session}: ingress route weights sum to "
                            f"{sum(w for _, w in routes):.6f}, not 1")
        for route, w in routes:
            if w > 0:
                problems += _route_problems(tables, d, route)
    return problems


def _route_problems(tables: Mapping[str, RelayTable], d: Demand, route: int) -> list[str]:
    where = f"session {d.session} route {route}"
    problems: list[str] = []
    reached: set[str] = set()
    on_stack: list[str] = []

    def visit(node: str) -> None:
        if node in on_stack:
            problems.append(f"{where}: loop {' -> '.join(on_stack[on_stack.index(node):] + [node])}")
            return
        if node in reached:
            return
        table = tables.get(node)
        entry = table.entries.get((d.wire_topic, route)) if table else None
        if entry is None:
            problems.append(f"{where}: relay {node} is reached but has no entry")
            return
        if isinstance(entry, Split):
            if any(w < 0 for _, w in entry.weights):
                problems.append(f"{where}: relay {node} has a negative split weight")
            total = sum(w for _, w in entry.weights)
            if abs(total - 1.0) > WEIGHT_TOLERANCE:
                problems.append(f"{where}: relay {node} splits {total:.6f}, not 1")
        if not entry.next_hops:
            problems.append(f"{where}: relay {node} forwards nowhere")
        on_stack.append(node)
        for h in entry.next_hops:
            if h == LOCAL:
                if node not in d.sinks:
                    problems.append(f"{where}: relay {node} delivers locally but has no subscriber")
                reached.add(node)
            else:
                visit(h)
        on_stack.pop()
        reached.add(node)

    visit(d.source)
    delivered = {n for n in reached
                 if LOCAL in tables[n].entries[(d.wire_topic, route)].next_hops}
    for sink in d.sinks:
        if sink not in delivered:
            problems.append(f"{where}: subscribers at {sink} are never reached")
    return problems


def capacity_problems(plan: Plan, net: NetworkState) -> list[str]:
    """Links whose planned load exceeds their effective capacity, or that do not exist."""
    problems = []
    for (a, b), used in sorted(plan.link_load().items()):
        if (a, b) not in net.links:
            problems.append(f"link {a}->{b} carries {used:.3f} Mbit/s but is not in the overlay")
            continue
        cap = net.capacity_mbps(a, b)
        if used > cap * (1 + CAPACITY_TOLERANCE) + 1e-9:
            problems.append(f"link {a}->{b} carries {used:.3f} Mbit/s over its capacity {cap:.3f}")
    return problems


def validate_plan(plan: Plan, net: NetworkState, demands: Sequence[Demand]) -> None:
    """Raise `PlanError` listing every problem; return quietly when the plan is sound."""
    problems = table_problems(plan.tables, demands) + capacity_problems(plan, net)
    for d in demands:
        sp = plan.sessions.get(d.session)
        if sp is None:
            problems.append(f"session {d.session} has no plan")
        elif not math.isfinite(sp.rate_mbps) or sp.rate_mbps < 0:
            problems.append(f"session {d.session} has rate {sp.rate_mbps}")
    if problems:
        raise PlanError(problems)
