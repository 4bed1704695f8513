"""Max-min fair rates for sessions that share overlay links: the LP engine and water-filling.

Owns the allocation step every strategy ends with. Given routes (paths or trees, each serving one
commodity) and link capacities, it finds route rates such that the commodities' rates are max-min
fair, classes served in order, and the routes used are the shortest among equally fair ones. Two
engines: `max_min_fair` (progressive filling with LPs over route variables, with optional column
generation) and `water_fill` (classic progressive filling when each session has one fixed route).
Which routes exist is left to `paths`, `unicast`, `multicast` and `baselines`.

A commodity is a group of sessions that are interchangeable for routing (same source, sinks,
candidate routes, cap and class). Max-min fair rates are unique, so such sessions get equal
rates, and one LP row per group stands for all of them: row `S_g >= n_g t` (Nace & Pioro 2008).

Solvers: `highs` builds the LP matrix directly in highspy and modifies it in place between
solves, so most progressive-filling steps are a warm-started primal simplex (the interior
point method takes the solves that start far from the last basis, `INTERIOR_COLUMNS`); `cbc`
builds the same LP with PuLP and solves it with CBC from scratch each step (the fallback,
slower).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stemflow.network import Edge

DUAL_TOLERANCE = 1e-7
"""A commodity row whose dual exceeds this is saturated: its rate cannot rise (Nace & Pioro)."""
FREEZE_SLACK = 1e-7
"""Frozen rates are held at (1 - this) x their level, so later LPs stay feasible despite rounding."""
FIX_TOLERANCE = 1e-7
"""A route whose reduced cost after a level is below -this is fixed at 0 (`_Columns.fix_dead`)
until its reduced cost says it improves an LP again (`_Columns.revive`); the same scale as
`PRICE_TOLERANCE`, below which a reduced cost is noise."""
PRICE_TOLERANCE = 1e-7
"""Column generation adds a route only if it improves the objective by more than this."""
SIMPLEX_ITERATION_LIMIT = 10_000
"""Warm re-solves took up to ~5 000 primal simplex iterations when healthy; past this, switch to
the interior point method for that solve (see `_HighsLp.solve`)."""
BOUND_PERTURBATION = 0.0
"""HiGHS's primal simplex perturbs bounds against degeneracy (default multiplier 1) and then
cleans up the perturbed solution; on these max-t LPs the clean-up cost more than degeneracy did:
exact max-min at 40 x 1 000 took 25.8-26.4 s with it, 14.1-14.7 s without (single plans of the
same state, 2-core VM under load; `benchmarks/routing.py` synthetic mesh; docs/routing.md)."""
INTERIOR_COLUMNS = 200
"""A solve after this many new columns, the first solve of an LP, and the first of the
throughput stage go to the interior point method: warm primal simplex took 1.3-1.4 s and
5 000-6 000 iterations on such LPs of 40 x 1 000 (2 283 rows, 3 900-6 700 columns), the
interior point method with crossover 0.25-0.42 s (HiGHS 1.16, one core). Fewer new columns
leave the last basis close to optimal, where the simplex wins. The last stage (delay) starts
from the last level's basis: once fixed routes left the model (`_Columns`), its warm primal
simplex took about 100 iterations (0.01 s) against 0.73 s by the interior point method."""
HOP_COST_MS = 1e-3
"""Tie-break in the final stage: among equal-latency routes prefer fewer hops."""
SPEND_DELAY_EPS = 1e-4
"""When filling is truncated, the throughput LP also prefers short routes, each unit of rate
costing at most this fraction of a unit for its delay: at most 0.01% of throughput is traded
for latency, and the separate delay LP (as costly as the throughput one) is saved."""

class RoutePricing(Protocol):
    """An exact pricer over every route of many commodities: paths (`pricing.PathPricing`) or
    trees (`tree_pricing.TreePricing`)."""

    def improving(self, duals: np.ndarray, crow: int, objective: Objective,
                  known: Mapping[tuple[int, tuple[Edge, ...]], bool]) -> list[Route]: ...


@dataclass(frozen=True)
class Route:
    """A path or tree that carries one commodity; `delay_ms` is its one-way delay."""

    commodity: int
    edges: tuple[Edge, ...]
    delay_ms: float
    hops: tuple[str, ...] = ()


@dataclass
class Commodity:
    """Sessions routed together: `size` of them, each capped at `cap_mbps`, served in `rank`."""

    size: int
    cap_mbps: float
    rank: int = 0
    delay_weight: float = 1.0
    """Weight of this commodity's delay in the last stage: higher wins the fast routes."""


@dataclass
class FairShare:
    """The allocation: aggregate rate of each route, per-session rate of each commodity."""

    routes: list[Route]
    route_mbps: np.ndarray
    rate_mbps: np.ndarray
    solver: str
    build_s: float = 0.0
    solve_s: float = 0.0
    price_s: float = 0.0
    lp_solves: int = 0


class SolverError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# Solver back ends: the same small interface over an LP with rows [lb, ub] and columns [lb, ub].


def _new_highs():  # noqa: ANN202 - highspy.Highs
    """A HiGHS instance; the first one per process prints a banner to fd 1, which would break
    `--json` output, so that one is created with fd 1 pointed at /dev/null."""
    import highspy

    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SHOWN = True
    return h


_BANNER_SHOWN = False


class _HighsLp:
    """The LP held in a highspy model, changed in place so re-solves start from the last basis."""

    name = "highs"

    def __init__(self, row_lb: np.ndarray, row_ub: np.ndarray, time_limit_s: float):
        import highspy

        self._hs = highspy
        self.h = h = _new_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(time_limit_s))
        h.setOptionValue("threads", 1)
        # Primal simplex: freezing a level keeps the last solution primal feasible, so each
        # re-solve starts from it; on these degenerate max-t LPs it was 5-10x faster than dual.
        h.setOptionValue("simplex_strategy", 4)
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_iteration_limit", SIMPLEX_ITERATION_LIMIT)
        h.setOptionValue("primal_simplex_bound_perturbation_multiplier", BOUND_PERTURBATION)
        inf = highspy.kHighsInf
        h.addRows(len(row_lb), np.where(np.isfinite(row_lb), row_lb, -inf),
                  np.where(np.isfinite(row_ub), row_ub, inf), 0, np.zeros(0, np.int32),
                  np.zeros(0, np.int32), np.zeros(0))
        self.n_cols = 0
        self._reduced = np.zeros(0)

    def add_cols(self, cost: np.ndarray, lb: np.ndarray, ub: np.ndarray, starts: np.ndarray,
                 index: np.ndarray, value: np.ndarray) -> None:
        inf = self._hs.kHighsInf
        self.h.addCols(len(cost), cost, lb, np.where(np.isfinite(ub), ub, inf), len(index),
                       starts.astype(np.int32), index.astype(np.int32), value)
        self.n_cols += len(cost)

    def set_coeff(self, row: int, col: int, value: float) -> None:
        self.h.changeCoeff(row, col, value)

    def set_row_bounds(self, row: int, lb: float, ub: float) -> None:
        inf = self._hs.kHighsInf
        self.h.changeRowBounds(row, lb if math.isfinite(lb) else -inf, ub if math.isfinite(ub) else inf)

    def set_col_bounds(self, col: int, lb: float, ub: float) -> None:
        self.h.changeColBounds(col, lb, ub if math.isfinite(ub) else self._hs.kHighsInf)

    def set_objective(self, cost: np.ndarray, maximize: bool) -> None:
        idx = np.arange(len(cost), dtype=np.int32)
        self.h.changeColsCost(len(cost), idx, cost)
        sense = self._hs.ObjSense.kMaximize if maximize else self._hs.ObjSense.kMinimize
        self.h.changeObjectiveSense(sense)

    def solve(self, interior: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Primal values and row duals (HiGHS signs: column dual = cost - A^T row_dual).

        `interior`: solve by the interior point method (with crossover, so the next solve
        starts warm from its basis) instead of the warm primal simplex; see `INTERIOR_COLUMNS`.

        A warm primal simplex stalls now and then on these degenerate LPs (one re-solve took
        53 s of a 100 s plan); past `SIMPLEX_ITERATION_LIMIT` the LP is solved by the interior
        point method instead, whose crossover leaves a basis for the next warm start. A warm
        solve that ends in "Unknown" (seen once in a seeded re-plan at 40 x 1 000,
        `benchmarks/routing.py`) or "Infeasible" (every LP here is feasible by construction; seen
        without bound perturbation, `BOUND_PERTURBATION`) is repeated once from scratch with
        HiGHS's default perturbation.
        """
        if interior:
            self.h.setOptionValue("solver", "ipm")
        self.h.run()
        self.h.setOptionValue("solver", "simplex")
        status = self.h.getModelStatus()
        if status in (self._hs.HighsModelStatus.kUnknown, self._hs.HighsModelStatus.kInfeasible):
            self.h.clearSolver()
            self.h.setOptionValue("primal_simplex_bound_perturbation_multiplier", 1.0)
            self.h.run()
            self.h.setOptionValue("primal_simplex_bound_perturbation_multiplier",
                                  BOUND_PERTURBATION)
            status = self.h.getModelStatus()
        if status == self._hs.HighsModelStatus.kIterationLimit:
            self.h.setOptionValue("solver", "ipm")
            self.h.setOptionValue("simplex_iteration_limit", 2**31 - 1)
            self.h.run()
            self.h.setOptionValue("solver", "simplex")
            self.h.setOptionValue("simplex_iteration_limit", SIMPLEX_ITERATION_LIMIT)
            status = self.h.getModelStatus()
        if status != self._hs.HighsModelStatus.kOptimal:
            raise SolverError(f"HiGHS: {self.h.modelStatusToString(status)}")
        sol = self.h.getSolution()
        self._reduced = np.asarray(sol.col_dual)
        return np.asarray(sol.col_value), np.asarray(sol.row_dual)

    def reduced_costs(self) -> np.ndarray:
        """Column duals of the last solve (cost - A^T row_dual)."""
        return self._reduced

    def delete_cols(self, cols: np.ndarray) -> None:
        """Remove columns (nonbasic ones keep the basis valid); later ones shift down."""
        self.h.deleteCols(len(cols), cols.astype(np.int32))
        self.n_cols -= len(cols)


class _PulpLp:
    """The same LP kept as arrays and rebuilt with PuLP for each solve by CBC."""

    name = "cbc"

    def __init__(self, row_lb: np.ndarray, row_ub: np.ndarray, time_limit_s: float):
        import pulp

        self._pulp = pulp
        self.row_lb, self.row_ub = list(row_lb), list(row_ub)
        self.cols: list[dict[int, float]] = []
        self.col_lb: list[float] = []
        self.col_ub: list[float] = []
        self.cost: np.ndarray = np.zeros(0)
        self.maximize = True
        self.time_limit_s = time_limit_s
        self.n_cols = 0

    def add_cols(self, cost: np.ndarray, lb: np.ndarray, ub: np.ndarray, starts: np.ndarray,
                 index: np.ndarray, value: np.ndarray) -> None:
        bounds = [int(v) for v in starts] + [len(index)]
        for j in range(len(cost)):
            self.cols.append({int(index[i]): float(value[i])
                              for i in range(bounds[j], bounds[j + 1])})
            self.col_lb.append(float(lb[j]))
            self.col_ub.append(float(ub[j]))
        self.cost = np.concatenate([self.cost, cost])
        self.n_cols += len(cost)

    def set_coeff(self, row: int, col: int, value: float) -> None:
        if value == 0:
            self.cols[col].pop(row, None)
        else:
            self.cols[col][row] = value

    def set_row_bounds(self, row: int, lb: float, ub: float) -> None:
        self.row_lb[row], self.row_ub[row] = lb, ub

    def set_col_bounds(self, col: int, lb: float, ub: float) -> None:
        self.col_lb[col], self.col_ub[col] = lb, ub

    def set_objective(self, cost: np.ndarray, maximize: bool) -> None:
        self.cost[:len(cost)] = cost
        self.maximize = maximize

    def solve(self, interior: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Solved from scratch by CBC each time (`interior` is HiGHS's choice, ignored here)."""
        pulp = self._pulp
        prob = pulp.LpProblem("maxmin", pulp.LpMaximize if self.maximize else pulp.LpMinimize)
        xs = [prob.add_variable(f"x{j}", lowBound=self.col_lb[j],
                                upBound=self.col_ub[j] if math.isfinite(self.col_ub[j]) else None)
              for j in range(self.n_cols)]
        prob += pulp.LpAffineExpression([(xs[j], c) for j, c in enumerate(self.cost) if c])
        rows: list[list[tuple[pulp.LpVariable, float]]] = [[] for _ in self.row_lb]
        for j, col in enumerate(self.cols):
            for i, v in col.items():
                rows[i].append((xs[j], v))
        names: list[tuple[int, str]] = []
        for i, terms in enumerate(rows):
            if not terms:
                continue
            expr = pulp.LpAffineExpression(terms)
            if math.isfinite(self.row_lb[i]):
                prob += pulp.LpConstraint(expr, pulp.LpConstraintGE, f"r{i}l", self.row_lb[i])
                names.append((i, f"r{i}l"))
            if math.isfinite(self.row_ub[i]):
                prob += pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{i}u", self.row_ub[i])
                names.append((i, f"r{i}u"))
        with warnings.catch_warnings():  # PuLP 3.3 deprecates the bundled-CBC class
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=self.time_limit_s)
        status = prob.solve(solver)
        if pulp.LpStatus[status] != "Optimal":
            raise SolverError(f"{self.name}: {pulp.LpStatus[status]}")
        x = np.array([v.varValue or 0.0 for v in xs])
        # Normalize to HiGHS's signs when maximizing: <= rows (links) >= 0, >= rows <= 0.
        duals = np.zeros(len(self.row_lb))
        for i, name in names:
            pi = abs(prob.get_constraint_by_name(name).pi or 0.0)
            duals[i] += pi if name.endswith("u") else -pi
        return x, duals


def _backend(solver: str, row_lb: np.ndarray, row_ub: np.ndarray,
             time_limit_s: float) -> _HighsLp | _PulpLp:
    if solver == "highs":
        return _HighsLp(row_lb, row_ub, time_limit_s)
    if solver == "cbc":
        return _PulpLp(row_lb, row_ub, time_limit_s)
    raise ValueError(f"unknown solver {solver!r}; use 'highs' or 'cbc'")


# ---------------------------------------------------------------------------------------------
# Progressive filling with LPs


def max_min_fair(commodities: Sequence[Commodity], routes: Sequence[Route],
                 capacity_mbps: Mapping[Edge, float], solver: str = "highs",
                 time_limit_s: float = 30.0, pool: Sequence[Route] = (),
                 max_levels: int | None = None,
                 path_pricing: RoutePricing | None = None, max_routes: int | None = None,
                 tree_pricing: RoutePricing | None = None) -> FairShare:
    """Max-min fair commodity rates over the given routes, by progressive filling with LPs.

    Formulation (route-based multi-commodity flow; a tree is a route that loads each of its
    edges once, as in fractional Steiner tree packing):

        max t   s.t.  sum_{r in g} x_r - n_g t >= 0        for free commodities g
                      sum_{r in g} x_r >= n_g f_g           for frozen ones (level f_g)
                      sum_{r uses e} x_r <= c_e             for every link e
                      t <= min cap of the free commodities,  x >= 0

    After each solve, commodities whose row has a positive dual are saturated and are frozen at
    level t*; so are those whose cap t* reached. Repeat until none is free. Classes are filled
    in `rank` order: a later class's rows join only when every earlier one is frozen, which
    places delay-sensitive sessions first. A last LP keeps every level and minimizes the
    rate-weighted route delay, so traffic takes the shortest of the equally fair routes.

    With `max_levels`, filling stops at that many levels of a class: the commodities still free
    are held at the last level reached and their total rate is maximized (Danna, Mandal, Singh,
    INFOCOM 2012, trade fairness for throughput this way). This bounds the number of LPs; the
    result is max-min fair only up to that level. `None` gives exact max-min fairness.

    Column generation, three kinds (Dantzig-Wolfe): `path_pricing` (exact: the cheapest path of
    every unicast commodity under the duals, `pricing.PathPricing`) and `tree_pricing` (the
    cheapest tree of every multicast commodity, a minimum Steiner arborescence under the duals,
    `tree_pricing.TreePricing`) add, between solves, each commodity's least reduced-cost route
    if it improves the LP, and re-solve until none does; routes in `pool` (known candidates)
    enter when their reduced cost, computed from the duals in one numpy pass, says they improve
    it. All three need HiGHS's signed duals in the minimizing delay stage; with CBC they price
    the maximizing stages only (the pool joins up front). `max_routes` caps the routes path
    pricing may give a commodity.

    Why the answer is exact (with `path_pricing`, `tree_pricing` exact for every commodity, as
    its `unproven` says, `max_levels=None`, `max_routes=None`): each level's LP is solved to
    optimality over *every* path and tree, because pricing stops only when the cheapest path
    and the cheapest tree under the duals have non-negative reduced cost, i.e. the duals are
    feasible for the LP with all path and tree columns (LP duality). A commodity is
    frozen at a level t* only if its row's dual is positive (or it reached its cap): by
    complementary slackness no solution keeping every other free commodity at >= t* gives it
    more, so freezing it at t* loses nothing (Nace & Pioro 2008, Thm. 1 and algorithm MP-MMF
    with the dual test); at every level either t* reached a cap (those commodities freeze) or
    some free commodity has a positive dual (dual feasibility of the column t makes the duals,
    weighted by commodity sizes, sum to 1), so filling ends. The levels frozen are
    therefore the max-min fair levels, which are unique, within `FREEZE_SLACK` and the
    solver's tolerances.

    Reduced-cost fixing: once a level's LP is optimal, a route with a negative reduced cost can
    carry no flow in any later stage, which keeps every commodity at or above the level it has
    reached; such routes are deleted from the model and dropped from the pool
    (`_Columns.fix_dead`). This removes the degenerate pivots among routes through saturated
    links from most later LPs, and makes every simplex iteration cheaper. The argument holds
    only up to what later stages borrow from frozen levels (`FREEZE_SLACK`, solver tolerances),
    so fixed routes are still priced from the row duals: an LP counts as optimal only when none
    of them improves it either (`_Columns.revive` puts those back), and fixing changes no
    optimum.

    Parameters
    ----------
    commodities : groups of interchangeable sessions.
    routes : routes in the LP from the start; more may be appended (see `FairShare.routes`).
    capacity_mbps : capacity of every link a route may use.
    solver : "highs" (in-process, modified in place) or "cbc" (PuLP + CBC).
    pool : further candidate routes, priced in when useful.
    max_levels : at most this many filling levels per class (None: exact).
    path_pricing : exact pricer of paths over the whole overlay (`pricing.PathPricing`).
    max_routes : at most this many routes per commodity from `path_pricing` (None: no cap).
    tree_pricing : pricer of multicast trees over the whole overlay (`tree_pricing.TreePricing`).

    Returns
    -------
    `FairShare` with each route's aggregate rate and each commodity's per-session rate.

    References
    ----------
    D. Nace, M. Pioro, "Max-min fairness and its applications to routing and load-balancing in
    communication networks: a tutorial", IEEE Commun. Surveys & Tutorials 10(4), 2008 (the
    dual test for saturation). D. Bertsekas, R. Gallager, "Data Networks", 1992, §6.5.2.
    E. Danna, S. Mandal, A. Singh, "A practical algorithm for balancing the max-min fairness
    and throughput objectives in traffic engineering", INFOCOM 2012.
    """
    t_build = time.perf_counter()
    routes = list(routes)
    links = sorted(capacity_mbps)
    row_of_link = {e: i for i, e in enumerate(links)}
    n_links, n_comm = len(links), len(commodities)
    crow = n_links  # first commodity row
    cap = np.array([capacity_mbps[e] for e in links], dtype=float)
    row_lb = np.concatenate([np.full(n_links, -np.inf), np.zeros(n_comm)])
    row_ub = np.concatenate([cap, np.full(n_comm, np.inf)])
    lp = _backend(solver, row_lb, row_ub, time_limit_s)
    if not isinstance(lp, _HighsLp):
        routes += list(pool)
        pool = ()
    weights = tuple(c.delay_weight for c in commodities)
    pricing = _Pool(pool, row_of_link, crow, weights)

    served = np.zeros(n_comm, dtype=bool)
    for r in (*routes, *pool):
        served[r.commodity] = True
    # column 0 is t; it enters a commodity row when that commodity becomes free
    lp.add_cols(np.array([1.0]), np.zeros(1), np.array([0.0]), np.zeros(1), np.zeros(0),
                np.zeros(0))
    lp.set_objective(np.array([1.0]), maximize=True)
    cols = _Columns(lp, row_of_link, crow, weights)
    cols.add(routes, Objective("level"))
    known: dict[tuple[int, tuple[Edge, ...]], bool] = {}
    in_lp = np.zeros(n_comm, dtype=np.int64)
    for r in routes:
        known[(r.commodity, r.edges)] = False
        in_lp[r.commodity] += 1
    out = FairShare(routes, np.zeros(len(routes)), np.zeros(n_comm), lp.name)
    out.build_s += time.perf_counter() - t_build

    def solve_and_price(objective: Objective) -> tuple[np.ndarray, np.ndarray]:
        """Solve, then add improving routes and re-solve until none is left: the pool is finite
        and path and tree pricing find the best route of every commodity, so this ends with the
        LP optimal over every route (see `TreePricing.unproven` for the exceptions)."""
        x, duals = _solve(lp, out, interior=objective.kind == "spend" or out.lp_solves == 0)
        signed = objective.maximize or isinstance(lp, _HighsLp)
        while True:
            t0 = time.perf_counter()
            new = pricing.improving(duals, objective)
            if path_pricing is not None and signed:
                found = path_pricing.improving(duals, crow, objective, known)
                if max_routes is not None:
                    found = [r for r in found if in_lp[r.commodity] < max_routes]
                new += found
            if tree_pricing is not None and signed:
                new += tree_pricing.improving(duals, crow, objective, known)
            out.price_s += time.perf_counter() - t0
            if not new:
                t0 = time.perf_counter()
                back = cols.revive(duals, objective)
                for j in back:
                    known[(routes[j].commodity, routes[j].edges)] = False
                out.price_s += time.perf_counter() - t0
                if not back:
                    break
                x, duals = _solve(lp, out)
                continue
            t0 = time.perf_counter()
            for r in new:
                known[(r.commodity, r.edges)] = False
                in_lp[r.commodity] += 1
            routes.extend(new)
            cols.add(new, objective)
            out.build_s += time.perf_counter() - t0
            x, duals = _solve(lp, out, interior=len(new) >= INTERIOR_COLUMNS)
        return cols.route_values(x), duals

    free: set[int] = set()
    # Fixing needs trusted reduced costs (HiGHS's; CBC's through PuLP are not). Fixed routes
    # stay priced (`_Columns.revive`), so a pricer that proves less fixes no more than it should.
    fixable = isinstance(lp, _HighsLp)
    big = 1e3 * (float(cap.sum()) + 1.0)
    sizes = np.array([c.size for c in commodities], dtype=float)
    for rank in sorted({c.rank for c in commodities}):
        t0 = time.perf_counter()
        for g, c in enumerate(commodities):
            if c.rank == rank and served[g] and c.cap_mbps > 0:
                free.add(g)
                lp.set_coeff(crow + g, 0, -float(c.size))
        out.build_s += time.perf_counter() - t0
        levels = 0
        spent = None
        while free:
            t0 = time.perf_counter()
            t_ub = min(min(commodities[g].cap_mbps for g in free), big)
            lp.set_col_bounds(0, 0.0, t_ub)
            out.build_s += time.perf_counter() - t0
            x, duals = solve_and_price(Objective("level"))
            levels += 1
            if fixable:
                t0 = time.perf_counter()
                for j in cols.fix_dead():
                    known[(routes[j].commodity, routes[j].edges)] = True
                pricing.drop_dead(duals)
                out.build_s += time.perf_counter() - t0
            t_star = float(x[0])
            if max_levels is not None and levels >= max_levels:
                scale = SPEND_DELAY_EPS / max(1e-9, max(
                    [Objective("delay", weights=weights).cost(r) for r in routes]
                    + [float(pricing.delay.max(initial=0.0))]))
                spent = _spend_the_rest(lp, cols, out, free, commodities, routes, crow, t_star,
                                        solve_and_price, weights, scale)
                free.clear()
                break
            lam = np.abs(duals[crow:])
            saturated = {g for g in free if lam[g] > DUAL_TOLERANCE}
            if t_star >= t_ub * (1 - 1e-9):
                saturated |= {g for g in free if commodities[g].cap_mbps <= t_star * (1 + 1e-9)}
            if not saturated:
                saturated = {max(free, key=lambda g: lam[g])}
            t0 = time.perf_counter()
            for g in saturated:
                _freeze(lp, crow + g, commodities[g].size * t_star)
            free -= saturated
            out.build_s += time.perf_counter() - t0

    # Final stage: keep every level, prefer short routes (done already if the last class
    # was truncated: its throughput LP also weighed delay).
    x = np.zeros(1)
    if spent is not None:
        x = spent
    elif routes:
        t0 = time.perf_counter()
        lp.set_col_bounds(0, 0.0, 0.0)
        delay = Objective("delay", weights=weights)
        cols.set_objective(delay)
        out.build_s += time.perf_counter() - t0
        x, _ = solve_and_price(delay)
    route_mbps = np.clip(x[1:len(routes) + 1], 0.0, None)
    route_mbps = np.concatenate([route_mbps, np.zeros(len(routes) - len(route_mbps))])
    route_mbps[route_mbps < 1e-9 * max(1.0, float(route_mbps.max(initial=0.0)))] = 0.0
    rate = np.zeros(n_comm)
    for r, v in zip(routes, route_mbps, strict=True):
        rate[r.commodity] += v
    out.routes, out.route_mbps, out.rate_mbps = routes, route_mbps, rate / np.maximum(sizes, 1)
    return out


@dataclass(frozen=True)
class Objective:
    """The objective of a stage, which sets the cost of every route column.

    `level`: max t (routes cost 0). `spend`: max the total rate of the commodities in `spend`
    (their routes cost 1), less `delay_scale` x their weighted delay. `delay`: min the
    weighted delay of every route.
    """

    kind: str
    spend: frozenset[int] = frozenset()
    weights: tuple[float, ...] = ()
    delay_scale: float = 0.0

    @property
    def maximize(self) -> bool:
        return self.kind != "delay"

    def cost(self, r: Route) -> float:
        weight = self.weights[r.commodity] if self.weights else 1.0
        delay = weight * (r.delay_ms + HOP_COST_MS * len(r.edges))
        if self.kind == "delay":
            return delay
        if self.kind == "spend":
            return (1.0 if r.commodity in self.spend else 0.0) - self.delay_scale * delay
        return 0.0

    def costs(self, routes: Sequence[Route]) -> np.ndarray:
        return np.array([self.cost(r) for r in routes], dtype=float)


class _Columns:
    """Which routes are columns of the LP, and the routes fixed at 0, which are not.

    Column 0 is t; LP column j + 1 carries route `col_route[j]`. A route whose reduced cost
    after a level is below -`FIX_TOLERANCE` is fixed at 0 by deleting its column from the
    model (`fix_dead`): no later stage can use it, by complementary slackness summed over the
    capacity rows (a solution that keeps every commodity at or above the level it reached must
    saturate every link with a positive dual and use only routes of zero reduced cost). Fewer
    columns make every later simplex iteration cheaper: after the first few levels of an exact
    plan at 40 x 1 000 more than half of the routes are fixed. The argument holds for later
    stages only up to what they borrow from frozen levels (`FREEZE_SLACK`, HiGHS's tolerances):
    a route of reduced cost -d can still carry up to that slack / d. So fixed routes stay
    priced, from the row duals in one numpy pass, and an LP counts as optimal only when none of
    them improves it either (`revive` puts those back as new columns): fixing changes no
    optimum. Before this check, a 40 x 1 000 plan's rates depended on its starting columns by up
    to 2 Mbit/s of 1 380 (docs/routing.md).
    """

    def __init__(self, lp: _HighsLp | _PulpLp, row_of_link: Mapping[Edge, int], crow: int,
                 weights: tuple[float, ...]):
        self.lp, self.row_of_link, self.crow, self.weights = lp, row_of_link, crow, weights
        self.col_route = np.zeros(0, dtype=np.int64)
        self.dead = np.zeros(0, dtype=bool)
        self.group = np.zeros(0, dtype=np.int64)
        self.delay = np.zeros(0)
        self.starts = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)
        self.objective = Objective("level")

    @property
    def n_routes(self) -> int:
        return len(self.dead)

    def add(self, routes: Sequence[Route], objective: Objective) -> None:
        """Append new routes as LP columns (costs of `objective`)."""
        if not routes:
            return
        first = self.n_routes
        lengths = np.array([len(r.edges) for r in routes], dtype=np.int64)
        self.starts = np.concatenate([self.starts, len(self.rows) + np.concatenate(
            [[0], np.cumsum(lengths)[:-1]])]).astype(np.int64)
        self.rows = np.concatenate([self.rows, np.array(
            [self.row_of_link[e] for r in routes for e in r.edges], dtype=np.int64)])
        self.group = np.concatenate([self.group, [r.commodity for r in routes]]).astype(np.int64)
        self.delay = np.concatenate([self.delay,
                                     Objective("delay", weights=self.weights).costs(routes)])
        self.dead = np.concatenate([self.dead, np.zeros(len(routes), dtype=bool)])
        self._insert(np.arange(first, self.n_routes), objective)

    def _insert(self, idx: np.ndarray, objective: Objective) -> None:
        ends = np.append(self.starts[1:], len(self.rows))
        index, starts = [], np.zeros(len(idx), dtype=np.int64)
        for k, j in enumerate(idx.tolist()):
            starts[k] = len(index)
            index.extend(self.rows[self.starts[j]:ends[j]].tolist())
            index.append(self.crow + int(self.group[j]))
        n = len(idx)
        self.lp.add_cols(self.costs(objective)[idx], np.zeros(n), np.full(n, np.inf), starts,
                         np.asarray(index, dtype=np.int64), np.ones(len(index)))
        self.col_route = np.concatenate([self.col_route, idx]).astype(np.int64)

    def costs(self, objective: Objective) -> np.ndarray:
        """Every route's cost under `objective` (as `Objective.cost`)."""
        if objective.kind == "delay":
            return self.delay
        if objective.kind == "spend":
            base = np.isin(self.group, list(objective.spend)).astype(float)
            return base - objective.delay_scale * self.delay
        return np.zeros(self.n_routes)

    def set_objective(self, objective: Objective) -> None:
        self.objective = objective
        self.lp.set_objective(np.concatenate([[0.0], self.costs(objective)[self.col_route]]),
                              objective.maximize)

    def route_values(self, x: np.ndarray) -> np.ndarray:
        """x with the LP's route columns in route order (0 for fixed routes): t first."""
        out = np.zeros(self.n_routes + 1)
        out[0] = x[0]
        out[self.col_route + 1] = x[1:len(self.col_route) + 1]
        return out

    def fix_dead(self) -> list[int]:
        """Delete the columns of negative reduced cost (the last solve's); their routes."""
        if not isinstance(self.lp, _HighsLp):
            return []
        reduced = self.lp.reduced_costs()[1:len(self.col_route) + 1]
        cols = np.flatnonzero(reduced < -FIX_TOLERANCE)
        if not cols.size:
            return []
        self.lp.delete_cols(cols + 1)
        gone = self.col_route[cols]
        self.dead[gone] = True
        self.col_route = np.delete(self.col_route, cols)
        return gone.tolist()

    def revive(self, duals: np.ndarray, objective: Objective) -> list[int]:
        """Put back as columns the fixed routes whose reduced cost improves the LP."""
        if not self.dead.any():
            return []
        idx = np.flatnonzero(self.dead)
        per_edge = duals[self.rows]
        load = np.add.reduceat(per_edge, self.starts) if per_edge.size else np.zeros(
            self.n_routes)
        load = np.where(np.diff(np.append(self.starts, len(self.rows))) == 0, 0.0, load)
        reduced = self.costs(objective)[idx] - load[idx] - duals[self.crow + self.group[idx]]
        gain = reduced if objective.maximize else -reduced
        back = idx[gain > PRICE_TOLERANCE]
        if not back.size:
            return []
        self.dead[back] = False
        self._insert(back, objective)
        return back.tolist()


def _freeze(lp: _HighsLp | _PulpLp, row: int, total_mbps: float) -> None:
    lp.set_coeff(row, 0, 0.0)
    lp.set_row_bounds(row, total_mbps * (1 - FREEZE_SLACK), math.inf)


def _spend_the_rest(lp: _HighsLp | _PulpLp, cols: _Columns, out: FairShare, free: set[int],
                    commodities: Sequence[Commodity], routes: list[Route], crow: int,
                    level: float,
                    solve_and_price: Callable[[Objective], tuple[np.ndarray, np.ndarray]],
                    weights: tuple[float, ...], delay_scale: float) -> np.ndarray:
    """Hold the free commodities at `level` and maximize their total rate (capped), each unit
    of rate also paying `delay_scale` x its weighted delay; returns the solution."""
    t0 = time.perf_counter()
    for g in free:
        c = commodities[g]
        _freeze(lp, crow + g, c.size * level)
        lp.set_row_bounds(crow + g, c.size * level * (1 - FREEZE_SLACK), c.size * c.cap_mbps)
    lp.set_col_bounds(0, 0.0, 0.0)
    spend = Objective("spend", frozenset(free), weights, delay_scale)
    cols.set_objective(spend)
    out.build_s += time.perf_counter() - t0
    x, _ = solve_and_price(spend)
    t0 = time.perf_counter()
    got = np.zeros(len(commodities))
    for r, v in zip(routes, x[1:], strict=False):
        got[r.commodity] += v
    for g in free:
        _freeze(lp, crow + g, float(got[g]))
    cols.set_objective(Objective("level"))
    out.build_s += time.perf_counter() - t0
    return x


class _Pool:
    """Candidate routes outside the LP, as arrays, priced in one numpy pass per round."""

    def __init__(self, pool: Sequence[Route], row_of_link: Mapping[Edge, int], crow: int,
                 weights: tuple[float, ...]):
        self.routes = list(pool)
        self.left = np.ones(len(self.routes), dtype=bool)
        self.group = np.array([r.commodity for r in self.routes], dtype=np.int64)
        lengths = np.array([len(r.edges) for r in self.routes], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.rows = np.array([row_of_link[e] for r in self.routes for e in r.edges],
                             dtype=np.int64)
        self.empty = lengths == 0
        self.crow = crow
        self.delay = Objective("delay", weights=weights).costs(self.routes)

    def _costs(self, objective: Objective) -> np.ndarray:
        if objective.kind == "delay":
            return self.delay
        if objective.kind == "spend":
            base = np.isin(self.group, list(objective.spend)).astype(float)
            return base - objective.delay_scale * self.delay
        return np.zeros(len(self.routes))

    def _reduced(self, duals: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """Reduced cost of every pool route: cost - A^T y."""
        if self.rows.size:
            per_edge = duals[self.rows]
            load = np.add.reduceat(per_edge, self.starts) if per_edge.size else per_edge
            load = np.where(self.empty, 0.0, load)
        else:
            load = np.zeros(len(self.routes))
        return costs - load - duals[self.crow + self.group]

    def drop_dead(self, duals: np.ndarray) -> None:
        """Forget the routes a level's duals rule out for good (see `_Columns`)."""
        if self.left.any():
            reduced = self._reduced(duals, self._costs(Objective("level")))
            self.left &= reduced >= -FIX_TOLERANCE

    def improving(self, duals: np.ndarray, objective: Objective) -> list[Route]:
        """Routes with an improving reduced cost (cost - A^T y), the best one per commodity."""
        if not self.left.any():
            return []
        maximize = objective.maximize
        reduced = self._reduced(duals, self._costs(objective))
        gain = reduced if maximize else -reduced
        gain = np.where(self.left, gain, 0.0)
        pick = np.flatnonzero(gain > PRICE_TOLERANCE)
        if pick.size:  # the best of each commodity: fewer, smaller re-solves than all of them
            order = pick[np.lexsort((-gain[pick], self.group[pick]))]
            groups = self.group[order]
            pick = order[np.concatenate([[True], groups[1:] != groups[:-1]])]
        self.left[pick] = False
        return [self.routes[i] for i in pick]


def _solve(lp: _HighsLp | _PulpLp, out: FairShare,
           interior: bool = False) -> tuple[np.ndarray, np.ndarray]:
    t0 = time.perf_counter()
    x, duals = lp.solve(interior)
    out.solve_s += time.perf_counter() - t0
    out.lp_solves += 1
    return x, duals


# ---------------------------------------------------------------------------------------------
# Water-filling for fixed routes


def water_fill(routes: Sequence[tuple[Edge, ...] | None], caps_mbps: Sequence[float],
               capacity_mbps: Mapping[Edge, float]) -> np.ndarray:
    """Max-min fair rates when each session has one fixed route (a path or a tree).

    Progressive filling: raise every unfrozen session's rate together until a link saturates
    or a session reaches its cap; freeze the sessions crossing that link (or capped); repeat.
    A session whose route is None gets 0.

    References: Bertsekas & Gallager, "Data Networks", 2nd ed., 1992, §6.5.2.
    """
    n = len(routes)
    links = sorted({e for r in routes if r for e in r})
    col = {e: i for i, e in enumerate(links)}
    use = np.zeros((n, len(links)))
    for i, r in enumerate(routes):
        for e in r or ():
            use[i, col[e]] = 1.0
    capacity = np.array([capacity_mbps[e] for e in links], dtype=float)
    remaining = capacity.copy()
    caps = np.asarray(caps_mbps, dtype=float)
    rate = np.zeros(n)
    active = np.array([r is not None and c > 0 for r, c in zip(routes, caps, strict=True)])
    while active.any():
        users = use[active].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(users > 0, remaining / users, np.inf)
        step = min(float(share.min(initial=np.inf)), float((caps - rate)[active].min()))
        if not math.isfinite(step):
            raise ValueError("a session with an unbounded rate: give it a cap")
        rate[active] += step
        remaining -= step * users
        full = (remaining <= 1e-9 * capacity) & (users > 0)
        stop = active & ((use[:, full].sum(axis=1) > 0) | (rate >= caps * (1 - 1e-12)))
        remaining = np.maximum(remaining, 0.0)
        active &= ~stop
    return rate

