"""Faults of a scenario: the checks across the scenario, the timeline, what each fault touches.

Owns the meaning of a scenario's `faults:` once both drivers agree on it: which relays, overlay
links and control connections a fault takes away; the checks that need the whole scenario
(unknown relays and links, two faults that cannot hold at once); and the pure timeline of
start and end events both drivers play. The schema of each kind is `stemflow.scenario`'s
(`RelayKill`, `LinkDown`, ...); injecting the faults is `stemflow.sim.faults`' (SimPy) and
`stemflow.emu.faults`' (processes and delay lines); what a fault did is measured by each driver
and summarized into the same rows (`fault_rows`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stemflow.network import Edge
from stemflow.results import Row
from stemflow.scenario import (
    ControllerStop,
    FaultSpec,
    LinkDegrade,
    LinkDown,
    Partition,
    RelayKill,
    Scenario,
    ScenarioError,
)

# ---------------------------------------------------------------------------------------------
# What a fault touches


def fault_edges(fault: FaultSpec, links: Iterable[Edge]) -> list[Edge]:
    """The directed overlay edges among `links` a fault cuts or degrades (sorted).

    A link fault names an unordered pair: both directions present are touched. A partition cuts
    every edge with one end on each side; a relay kill cuts every edge at that relay.
    """
    links = list(links)
    if isinstance(fault, LinkDown | LinkDegrade):
        pair = set(fault.link)
        return sorted(e for e in links if set(e) == pair)
    if isinstance(fault, Partition):
        side = set(fault.datacenters)
        return sorted(e for e in links if (e[0] in side) != (e[1] in side))
    if isinstance(fault, RelayKill):
        return sorted(e for e in links if fault.relay in e)
    return []


def cut_from_controller(fault: Partition, controller_dc: str | None) -> list[str]:
    """Relays whose control connection a partition cuts: those on the side without the
    controller. A controller placed nowhere (`controller.datacenter` unset) sits beside every
    relay, so no control connection crosses the cut."""
    if controller_dc is None:
        return []
    side = set(fault.datacenters)
    return sorted(side) if controller_dc not in side else []


def touches(fault: FaultSpec, visited: Iterable[Sequence[str]], ends: Iterable[str]) -> bool:
    """Whether a fault is on a session's way: a route through `visited` (each a sequence of
    datacenters a frame passes) between relays `ends` (its publisher's and subscribers')."""
    paths = [tuple(p) for p in visited]
    ends = set(ends)
    if isinstance(fault, RelayKill):
        return fault.relay in ends or any(fault.relay in p for p in paths)
    if isinstance(fault, LinkDown | LinkDegrade):
        pair = set(fault.link)
        return any({a, b} == pair for p in paths for a, b in zip(p, p[1:], strict=False))
    if isinstance(fault, Partition):
        side = set(fault.datacenters)
        crosses = any((a in side) != (b in side) for p in paths for a, b in zip(p, p[1:], strict=False))
        return crosses or 0 < len(ends & side) < len(ends)
    return isinstance(fault, ControllerStop)


def answers(fault: FaultSpec, reason: str) -> bool:
    """Whether a plan made for `reason` (`Controller` words: "relay b left", "relay b missed
    heartbeats", "link a->b changed") is the controller's answer to `fault`. Any plan answers a
    controller restart; a partition is answered by a dead relay or a changed link across it."""
    if isinstance(fault, RelayKill):
        return reason.startswith(f"relay {fault.relay} ") and not reason.endswith("joined")
    if isinstance(fault, LinkDown | LinkDegrade):
        a, b = fault.link
        return reason in (f"link {a}->{b} changed", f"link {b}->{a} changed")
    if isinstance(fault, Partition):
        side = set(fault.datacenters)
        if m := re.fullmatch(r"link (.+)->(.+) changed", reason):
            return (m.group(1) in side) != (m.group(2) in side)
        return reason.endswith("missed heartbeats")
    return True


def describe(fault: FaultSpec) -> str:
    """A fault in words, for logs, tables and figure marks ("relay us-west1 killed")."""
    if isinstance(fault, RelayKill):
        return f"relay {fault.relay} killed"
    if isinstance(fault, LinkDown):
        return f"link {fault.link[0]}–{fault.link[1]} down"
    if isinstance(fault, LinkDegrade):
        what = [f"{fault.bandwidth_mbps:g} Mbit/s" if fault.bandwidth_mbps is not None else "",
                f"{fault.rtt_ms:g} ms" if fault.rtt_ms is not None else "",
                f"{fault.loss:.2%} loss" if fault.loss is not None else ""]
        return f"link {fault.link[0]}–{fault.link[1]} degraded ({', '.join(w for w in what if w)})"
    if isinstance(fault, ControllerStop):
        return "controller stopped"
    if isinstance(fault, Partition):
        return f"partition of {', '.join(fault.datacenters)}"
    return fault.type


def fault_id(index: int, fault: FaultSpec) -> str:
    """The `session` column of a fault's own result rows, in words: `fault 0: relay b killed`."""
    return f"fault {index}: {describe(fault)}"


AFTER_FAULT = " after fault "
"""A session's rows about a fault are under `SESSION after fault N` (`bulk-1GB after fault 0`)."""


# ---------------------------------------------------------------------------------------------
# The timeline


@dataclass(frozen=True)
class FaultEvent:
    """A fault starts (`starts`) or ends at `at_s`; `index` is its place in `faults:`."""

    at_s: float
    index: int
    fault: FaultSpec
    starts: bool


def timeline(faults: Sequence[FaultSpec]) -> list[FaultEvent]:
    """Every start and end, in time order; at one instant ends come first (a link that comes up
    as another goes down) and then the order of `faults:`.

    Example: `[kill us-west1 at 5 s until 9 s]` -> start at 5 s, end at 9 s.
    """
    events = [FaultEvent(f.at_s, i, f, True) for i, f in enumerate(faults)]
    events += [FaultEvent(f.until_s, i, f, False) for i, f in enumerate(faults) if f.until_s is not None]
    return sorted(events, key=lambda e: (e.at_s, e.starts, e.index))


# ---------------------------------------------------------------------------------------------
# Checks across the scenario


def check_faults(s: Scenario) -> None:
    """Raise `ScenarioError` for a fault naming what the scenario lacks, ending before it starts,
    or overlapping another fault of the same thing (two at once have no single meaning)."""
    dcs = set(s.datacenter_names)
    pairs = {frozenset(e) for e in ((ln.a, ln.b) for ln in s.links)}
    held: dict[tuple[str, ...], list[tuple[int, FaultSpec]]] = {}
    for i, f in enumerate(s.faults):
        where = f"faults.{i}"
        if f.until_s is not None and f.until_s <= f.at_s:
            raise ScenarioError(s.source, f"{where}.until", f"ends at {f.until_s:g} s, not after it "
                                                            f"starts at {f.at_s:g} s")
        if isinstance(f, RelayKill):
            _known(s, f"{where}.relay", f.relay, dcs)
            key: tuple[str, ...] = ("relay", f.relay)
        elif isinstance(f, LinkDown | LinkDegrade):
            for j, end in enumerate(f.link):
                _known(s, f"{where}.link.{j}", end, dcs)
            if frozenset(f.link) not in pairs:
                raise ScenarioError(s.source, f"{where}.link",
                                    f"no overlay link between {f.link[0]!r} and {f.link[1]!r}")
            key = ("link", *sorted(f.link))
        elif isinstance(f, Partition):
            for j, dc in enumerate(f.datacenters):
                _known(s, f"{where}.datacenters.{j}", dc, dcs)
            if not f.datacenters or set(f.datacenters) >= dcs:
                raise ScenarioError(s.source, f"{where}.datacenters",
                                    "a partition needs datacenters on both sides of the cut")
            key = ("partition",)
        else:
            key = ("controller",)
        for j, other in held.get(key, []):
            if _overlap(f, other):
                raise ScenarioError(s.source, where, f"overlaps faults.{j} ({describe(other)}, "
                                                     f"{_span(other)}): one at a time on the same "
                                                     f"{key[0]}")
        held.setdefault(key, []).append((i, f))


def _known(s: Scenario, field: str, name: str, dcs: set[str]) -> None:
    if name not in dcs:
        raise ScenarioError(s.source, field, f"unknown datacenter {name!r}; known: {sorted(dcs)}")


def _end(f: FaultSpec) -> float:
    return math.inf if f.until_s is None else f.until_s


def _overlap(a: FaultSpec, b: FaultSpec) -> bool:
    return a.at_s < _end(b) and b.at_s < _end(a)


def _span(f: FaultSpec) -> str:
    return f"from {f.at_s:g} s" + (" on" if f.until_s is None else f" to {f.until_s:g} s")


# ---------------------------------------------------------------------------------------------
# What a fault did, in the words of the results


@dataclass(frozen=True)
class FaultOutcome:
    """What one fault did to one session, as a driver measured it (None: not measurable there)."""

    fault: int
    session: str
    replan_s: float | None
    """Fault start to the controller's first plan that answers it."""
    resume_s: float | None
    """Fault start to the session's delivery running again (0: it never stopped)."""
    lost_bytes: float | None
    duplicated_bytes: float | None
    dip_mbps: float | None
    """Delivery rate just before the fault minus the lowest while it acted."""


FAULT_METRICS: Mapping[str, str] = {
    "replan_s": "fault_replan_s", "resume_s": "fault_resume_s", "lost_bytes": "fault_lost_bytes",
    "duplicated_bytes": "fault_duplicated_bytes", "dip_mbps": "fault_dip_mbps"}
"""FaultOutcome field -> metric of `stemflow.results.METRICS`."""


STALL_ONSET_S = 0.5
"""A stall is the fault's when it begins within this long of it: time for the fault to reach the
subscriber (a one-way path delay, 0.2 s at most between GCP regions) and for the controller to
hear of it; a gap that opens later is the transport's own burstiness or another cause."""


def resumption(samples: Sequence[tuple[float, float]], at_s: float, min_stall: int = 1
               ) -> tuple[float | None, float | None]:
    """(resume_s, dip_mbps) from a session's delivery-rate samples (t_s, Mbit/s).

    The rate before the fault is the last sample before `at_s`. Delivery stalled if, within
    `STALL_ONSET_S` of the fault, `min_stall` samples in a row are zero (more than one where
    arrivals are counted in bins, as a window-limited TCP delivers in bursts); it resumed at the
    first non-zero sample after that run (0 if it never stalled; None if it never came back). The
    dip is the rate before less the lowest rate from the fault until resumption plus one second.
    """
    before = [r for t, r in samples if t < at_s]
    after = [(t, r) for t, r in samples if t >= at_s]
    if not before or not after:
        return None, None
    stalled, run = None, 0
    for k, (t, r) in enumerate(after):
        if t - at_s > STALL_ONSET_S and run == 0:
            break
        run = run + 1 if r <= 0 else 0
        if run >= min_stall:
            stalled = k
            break
    if stalled is None:
        resume: float | None = 0.0
        window_end = after[0][0] + 1.0
    else:
        back = next((t for t, r in after[stalled:] if r > 0), None)
        resume = None if back is None else back - at_s
        window_end = math.inf if back is None else back + 1.0
    lowest = min(r for t, r in after if t <= window_end)
    return resume, max(0.0, before[-1] - lowest)


def outcome_values(faults: Sequence[FaultSpec], outcomes: Iterable[FaultOutcome]
                   ) -> list[tuple[str, str, float, float]]:
    """(session column, metric, value, t_s) of each measured outcome: the fault's re-plan time
    once under the fault's id, the rest under `fault-id/session`; t_s is the fault's start."""
    out: list[tuple[str, str, float, float]] = []
    replanned: set[int] = set()
    for o in outcomes:
        f = faults[o.fault]
        fid = fault_id(o.fault, f)
        if o.replan_s is not None and o.fault not in replanned:
            replanned.add(o.fault)
            out.append((fid, FAULT_METRICS["replan_s"], o.replan_s, f.at_s))
        for name in ("resume_s", "lost_bytes", "duplicated_bytes", "dip_mbps"):
            value = getattr(o, name)
            if value is not None:
                out.append((f"{o.session}{AFTER_FAULT}{o.fault}", FAULT_METRICS[name], value, f.at_s))
    return out


def summary_lines(rows: Iterable[Row]) -> list[str]:
    """Per strategy and fault, what it did, in one line a person reads: "multipath  fault 0:
    relay b killed: re-planned after 18 ms; bulk: resumed after 0.16 s, lost 1.51 MB, dip 400
    Mbit/s" (a fault the controller never answered says so)."""
    words = {FAULT_METRICS["resume_s"]: ("resumed after", 1.0, "s", ".2f"),
             FAULT_METRICS["lost_bytes"]: ("lost", 1e-6, "MB", ".2f"),
             FAULT_METRICS["duplicated_bytes"]: ("duplicated", 1e-6, "MB", ".2f"),
             FAULT_METRICS["dip_mbps"]: ("dip", 1.0, "Mbit/s", ".0f")}
    names: dict[tuple[str, int], str] = {}
    replan: dict[tuple[str, int], float] = {}
    said: dict[tuple[str, int], dict[str, list[str]]] = {}
    for r in rows:
        if r.metric == FAULT_METRICS["replan_s"]:
            key = (r.strategy, int(r.session.split(":")[0].removeprefix("fault ")))
            names[key], replan[key] = r.session, r.value
        elif r.metric in words and AFTER_FAULT in r.session:
            session, _, index = r.session.rpartition(AFTER_FAULT)
            what, factor, unit, fmt = words[r.metric]
            said.setdefault((r.strategy, int(index)), {}).setdefault(session, []).append(
                f"{what} {r.value * factor:{fmt}} {unit}")
    out = []
    for key in sorted(names.keys() | said.keys()):
        head = (f"re-planned after {replan[key] * 1e3:.0f} ms" if key in replan
                else "the controller did not re-plan for it")
        parts = [f"{session}: {', '.join(xs)}" for session, xs in sorted(said.get(key, {}).items())]
        out.append(f"{key[0]}  {names.get(key, f'fault {key[1]}')}: " + "; ".join([head, *parts]))
    return out
