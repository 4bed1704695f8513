"""Faults in an emulated run: processes killed by PID and restarted on the scenario's timeline.

Owns playing a scenario's `faults:` against the real overlay processes of one strategy's run —
a relay-kill is SIGKILL to that relay's PID (restarted with the same command at `until`), a
controller-stop the same for the controller (restarted afresh, its state lost), link faults
delay lines reconfigured — and reading
what they did from what the processes left: the controller's log (when it re-planned), each
subscriber's arrivals (when delivery resumed, the dip, the delivery-rate timeline) and its
receipt (messages lost and duplicated, bytes delivered). The timeline and the meaning of a fault
are `stemflow.faults`'; the processes and their logs are `stemflow.emu.run`'s (`Overlay`).

Link faults reshape the emulated links while they run (`UserspaceLink.reshape`: the delay
line takes new parameters on its stdin): link-down and partition make them drop every packet
(a partition also the control links of the relays on the side without the controller),
link-degrade gives them the fault's rate, delay and loss; at `until` they get back their
configured shape. The netem backend cannot change a running link yet: a scenario with link
faults is refused there (`unplayable`), never run without them.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemflow.emu.links import LinkBackendError, LinkShape, Shape, ShapedLink
from stemflow.emu.topology import TopologyError

from stemflow.faults import (
    FaultOutcome,
    answers,
    cut_from_controller,
    describe,
    fault_edges,
    outcome_values,
    resumption,
    timeline,
)
from stemflow.scenario import (
    ControllerStop,
    FaultSpec,
    LinkDegrade,
    LinkDown,
    Partition,
    RelayKill,
    Scenario,
    Session,
)
from stemflow.workloads.registry import subscriber_label

if TYPE_CHECKING:
    from stemflow.emu.run import Overlay, SessionReports

LINK_FAULTS = frozenset({"link-down", "link-degrade", "partition"})
"""Fault kinds that change running links: only a link backend that can (`reshape`) plays them."""
SAMPLE_S = 0.05
"""Arrivals are counted in bins of this width for the delivery rate: the simulator's sampling
step (`stemflow.sim.faults.SAMPLE_S`), so both drivers' timelines and resumptions read alike."""
MIN_STALL_BINS = 2
"""Two empty bins in a row (100 ms) make a stall: a window-limited TCP connection delivers in
bursts, one window per round trip, so one empty 50 ms bin is its rhythm, not a stall."""
PLAN_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) controller INFO plan v\d+ .*?; (.*)$")
"""A plan in the controller's log (`stemflow.controller_server`: asctime, the plan, its reason)."""


def unplayable(scenario: Scenario, link_cls: type[ShapedLink]) -> str:
    """Why the emulator cannot play a scenario's faults on links of `link_cls` ("" if it can)."""
    bad = [f"faults.{i}" for i, f in enumerate(scenario.faults) if f.type in LINK_FAULTS]
    if bad and link_cls.reshape is ShapedLink.reshape:
        return (f"{', '.join(bad)}: the {link_cls.backend} link backend cannot change a running link; "
                "use --link-backend userspace for link faults")
    return ""


@dataclass
class _LinkState:
    """One emulated link under faults: its configured shape, the degradation acting on it, and
    how many faults cut it now (it carries nothing while any does)."""

    link: Any
    configured: LinkShape
    degraded: LinkShape | None = None
    cuts: int = 0


def _degraded(shape: LinkShape, f: LinkDegrade) -> LinkShape:
    """`shape` with the fault's bandwidth, RTT and loss where it gives them, in both directions
    (rates already scaled, as the scenario the emulator runs is)."""
    def one(x: Shape) -> Shape:
        return Shape(x.rate_mbps if f.bandwidth_mbps is None else f.bandwidth_mbps,
                     x.delay_ms if f.rtt_ms is None else f.rtt_ms / 2,
                     x.loss if f.loss is None else f.loss, x.queue_bytes)
    return LinkShape(one(shape.ab), one(shape.ba))


class FaultInjector:
    """Plays a scenario's faults against one strategy's overlay, on a thread of its own."""

    def __init__(self, overlay: Overlay, scenario: Scenario):
        self.overlay, self.scenario = overlay, scenario
        self.faults: list[FaultSpec] = list(scenario.faults)
        self.start_at: float | None = None
        self.applied: dict[tuple[int, bool], tuple[float, float]] = {}
        """(fault, starts) -> (monotonic, wall-clock time) at which it was done."""
        self.errors: list[str] = []
        """Faults that could not be applied, in words (the run reports them)."""
        self._links: dict[int, _LinkState] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, start_at: float) -> None:
        """The sessions' times count from `start_at` (monotonic): play the faults from it."""
        if self._thread is not None:
            return
        self.start_at = start_at
        self._thread = threading.Thread(target=self._play, name="faults", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Stop playing (the sessions are over) and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _play(self) -> None:
        assert self.start_at is not None
        for ev in timeline(self.faults):
            if self._stop.wait(max(0.0, self.start_at + ev.at_s - time.monotonic())):
                return
            try:
                self._apply(ev.fault, ev.starts)
            except (OSError, LinkBackendError, TopologyError) as e:
                self.errors.append(f"faults.{ev.index} ({describe(ev.fault)}): {e}")
            self.applied[(ev.index, ev.starts)] = (time.monotonic(), time.time())

    def _apply(self, f: FaultSpec, starts: bool) -> None:
        if isinstance(f, RelayKill | ControllerStop):
            label = f.relay if isinstance(f, RelayKill) else "controller"
            if starts:
                self.overlay.kill(label)
            else:
                self.overlay.start(label)
            return
        emu = self.overlay.emu
        if isinstance(f, LinkDown | LinkDegrade):
            pairs = [f.link]
        else:
            assert isinstance(f, Partition)
            pairs = [e for e in fault_edges(f, self._overlay_pairs()) if e[0] < e[1]]
            pairs += [("controller", r) for r in cut_from_controller(f, self.scenario.controller.datacenter)]
        for a, b in pairs:
            link = emu.link_between(a, b)
            st = self._links.setdefault(id(link), _LinkState(link, link.shape))
            if isinstance(f, LinkDegrade):
                st.degraded = _degraded(link.shape, f) if starts else None
            else:
                st.cuts += 1 if starts else -1
            link.reshape(st.degraded or st.configured, down=st.cuts > 0)

    def _overlay_pairs(self) -> list[tuple[str, str]]:
        label = {h.name: h.label for h in self.overlay.emu.plan.hosts}
        return [(label[ln.a], label[ln.b]) for ln in self.overlay.emu.plan.links_of("overlay")]

    # -- what the faults did ------------------------------------------------------------------------

    def rows(self, reports: Sequence[SessionReports]) -> list[tuple[str, str, str, float, float]]:
        """(session, workload, metric, value, t_s) rows: per fault its outcomes, per subscriber
        the sampled delivery rate and the bytes delivered."""
        assert self.start_at is not None
        plans = plan_times(self.overlay.log_dir / "controller.out")
        outcomes: list[FaultOutcome] = []
        out: list[tuple[str, str, str, float, float]] = []
        for r in reports:
            s, kind = r.session, r.session.workload.type
            for sub in r.subs:
                label = subscriber_label(s, sub["subscriber"])
                arrivals = [(t - self.start_at, n) for t, n in sub.get("arrivals", [])]
                samples = delivery_rate(arrivals)
                out += [(label, kind, "delivery_rate_mbps", rate, t) for t, rate in samples]
                out.append((label, kind, "delivered_bytes", float(sub["bytes"]), s.start_s))
                outcomes += self._outcomes(s, label, sub, arrivals, samples, plans)
        for i, f in enumerate(self.faults):  # a fault no delivering session met: its re-plan only
            if (i, True) in self.applied and all(o.fault != i for o in outcomes):
                outcomes.append(FaultOutcome(i, "", self._replan(i, f, plans), None, None, None, None))
        out += [(session, "", metric, value, t) for session, metric, value, t in
                outcome_values(self.faults, sorted(outcomes, key=lambda o: o.fault))]
        return out

    def _outcomes(self, session: Session, label: str, sub: dict[str, Any],
                  arrivals: list[tuple[float, int]],
                  samples: list[tuple[float, float]], plans: list[tuple[float, str]]
                  ) -> list[FaultOutcome]:
        out = []
        per_message = sub["bytes"] / sub["received"] if sub["received"] else 0.0
        lost = (sub["expected"] - sub["received"]) * per_message
        dup = sub["duplicates"] * per_message
        for i, f in enumerate(self.faults):
            if (i, True) not in self.applied:
                continue
            last = arrivals[-1][0] if arrivals else -math.inf
            if not session.start_s <= f.at_s <= last:
                continue  # the session had not started, or was over, when the fault struck
            replan = self._replan(i, f, plans)
            resume, dip = resumption(samples, f.at_s, MIN_STALL_BINS)
            if resume:  # the first message after the stall, not the start of its bin
                resume = next(t for t, _ in arrivals if t >= f.at_s + resume) - f.at_s
            only = len(self.faults) == 1  # loss and duplicates are the fault's only when it is alone
            out.append(FaultOutcome(i, label, replan, resume, lost if only else None,
                                    dup if only else None, dip))
        return out


    def _replan(self, i: int, f: FaultSpec, plans: list[tuple[float, str]]) -> float | None:
        """Fault start to the first plan after it (after the restart, for a controller) that
        answers it (`stemflow.faults.answers`)."""
        wall = self.applied[(i, True)][1]
        since = wall
        if isinstance(f, ControllerStop) and (i, False) in self.applied:
            since = self.applied[(i, False)][1]
        return next((t - wall for t, why in plans if t >= since and answers(f, why)), None)


def delivery_rate(arrivals: Iterable[tuple[float, int]]) -> list[tuple[float, float]]:
    """(bin start s, Mbit/s) in `SAMPLE_S` bins from the first arrival to the last."""
    arrivals = list(arrivals)
    if not arrivals:
        return []
    first = math.floor(arrivals[0][0] / SAMPLE_S)
    bins = [0] * (math.floor(arrivals[-1][0] / SAMPLE_S) - first + 1)
    for t, n in arrivals:
        bins[math.floor(t / SAMPLE_S) - first] += n
    return [((first + k) * SAMPLE_S, b * 8 / SAMPLE_S / 1e6) for k, b in enumerate(bins)]


def plan_times(log: Path) -> list[tuple[float, str]]:
    """(wall-clock time in s since the epoch, reason) of each plan in a controller log, in order."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for ln in lines:
        if m := PLAN_LINE.match(ln):
            out.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(), m.group(2)))
    return sorted(out)
