"""The controller's logic, sans-IO: events in, forwarding-table updates out.

Owns the controller's state machine — which relays are alive, what they measured, which sessions
exist — and when to re-plan. It never touches a socket or a clock: callers pass `now_s` with
every event. The SimPy simulator and the asyncio controller process drive this same object, so a
scenario gets the same decisions in both worlds. Routing itself is `stemflow.routing`'s job.

One vocabulary: sessions exist because relays say who publishes and subscribes where
(`Interest`, with the publisher's rate cap, class and latency budget). Real relays send it inside
a `Report` (parsed and validated here, never in the process around us); the simulator sends the
very same `Interest` events for its modelled relays. Every session with subscribers gets a route:
one the strategy gave it a share on, or else a best-effort one beneath the plan
(`stemflow.routing.best_effort`); a topic nobody else subscribes to is marked so in its ingress
relay's table, so the relay neither holds its frames nor waits for a route. A subscription to a
pattern (`chat.*`, NATS's wildcards: `stemflow.subjects`) is interest in every published topic it
covers: its relay is a sink of each such topic's sessions (`_with_patterns`).

Re-planning policy: at once when relays or sessions change; when a link measurement moves by more
than `replan_threshold` (relative), at most every `min_replan_interval_s`, on the next event or
`Tick` after the interval has passed. A relay silent for `heartbeat_timeout_s` is declared dead
and routed around. A plan that fails is an action (`PlanFailed`) beside the others, never an
exception that would discard them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stemflow.network import LinkState, NetworkState
from stemflow.routing import Demand, Plan, RoutingOptions
from stemflow.routing.best_effort import best_effort_sessions
from stemflow.routing.plan import RelayTable, compile_tables
from stemflow.routing.planner import Planner
from stemflow.routing.route_ids import RouteIds
from stemflow.scenario import Priority
from stemflow.security.schema import SchemaError, measurement, relay_name
from stemflow.subjects import PatternError, is_pattern, matches, validate_pattern

HEARTBEAT_TIMEOUT_S = 1.5
"""Declare a relay dead after this much silence. Relays send a heartbeat every 0.25 s; six missed
ones leave half a second of a 2 s failure budget for re-planning and pushing tables."""
DEFAULT_DELAY_SENSITIVE_RATE_MBPS = 25.0
"""The rate planned for a delay-sensitive session whose publisher stated none. Delay-sensitive
sessions are placed first, so an uncapped one would be given whole links and starve every
bulk session behind it. 25 Mbit/s carries a high-quality 1080p or a modest 4K live video
stream, or 3 000 1 KB messages a second; a publisher that needs more says so
(`max_rate_mbps`)."""
REPLAN_THRESHOLD = 0.2
"""Re-plan when a link's RTT or rate moves by more than 20%: smaller moves are measurement noise."""
RTT_FILTER_S = 10.0
"""Routing sees the least RTT a link showed over the last 10 s, as BBR's min-RTT filter does: an
RTT measured under load includes the queue our own traffic builds, and routing on it makes
near-equal paths flap (each switch reorders in-flight frames). A real change of the underlay's
delay still shows within 10 s."""
MIN_REPLAN_INTERVAL_S = 1.0
"""Measurement-driven re-plans at most this often, so a noisy link cannot make routes flap."""


# -- events (inputs) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayJoined:
    relay: str  # datacenter name: one relay per datacenter
    address: str = ""


@dataclass(frozen=True)
class RelayLeft:
    relay: str


@dataclass(frozen=True)
class Heartbeat:
    relay: str


@dataclass(frozen=True)
class LinkReport:
    """A relay's measurement of its link to `peer`; None means "not measured"."""

    relay: str
    peer: str
    rtt_ms: float | None = None
    loss: float | None = None
    bandwidth_mbps: float | None = None
    delivered_mbps: float | None = None


@dataclass(frozen=True)
class Interest:
    """A relay's local publishers and subscribers of one topic (the topic is one session per
    relay that has publishers)."""

    relay: str
    topic: str
    publishers: int
    subscribers: int
    priority: Priority = Priority.BULK
    max_rate_mbps: float = math.inf
    """The most the publishers here will send (inf: not stated)."""
    latency_budget_ms: float | None = None


@dataclass(frozen=True)
class Report:
    """A relay's periodic report as it came off the wire (JSON object): link measurements,
    interest, counters. Parsed here; whatever is malformed is skipped and said (`Problem`)."""

    relay: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Tick:
    """Time passes: check heartbeats and deferred re-plans."""


Event = RelayJoined | RelayLeft | Heartbeat | LinkReport | Interest | Report | Tick


# -- actions (outputs) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PushTable:
    relay: str
    table: RelayTable


@dataclass(frozen=True)
class PlanComputed:
    plan: Plan
    reason: str
    at_s: float


@dataclass(frozen=True)
class RelayDead:
    relay: str


@dataclass(frozen=True)
class PlanFailed:
    """The strategy raised; the previous tables stay, and the next event tries again."""

    reason: str
    error: str
    at_s: float


@dataclass(frozen=True)
class Problem:
    """Input the controller could not use (a malformed report item), for the log."""

    relay: str
    message: str


Action = PushTable | PlanComputed | RelayDead | PlanFailed | Problem


# -- the controller ---------------------------------------------------------------------------


@dataclass
class _Relay:
    address: str
    last_seen_s: float


@dataclass
class Controller:
    """Sans-IO controller. `net` is the configured overlay; measurements refine it."""

    net: NetworkState
    strategy: str = "multipath"
    options: RoutingOptions = field(default_factory=RoutingOptions)
    heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S
    replan_threshold: float = REPLAN_THRESHOLD
    min_replan_interval_s: float = MIN_REPLAN_INTERVAL_S
    rtt_filter_s: float = RTT_FILTER_S

    relays: dict[str, _Relay] = field(default_factory=dict, init=False)
    sessions: dict[str, Demand] = field(default_factory=dict, init=False)
    interest: dict[str, dict[str, Interest]] = field(default_factory=dict, init=False)
    """Per topic, per relay, what its last report said."""
    patterns: dict[str, dict[str, Interest]] = field(default_factory=dict, init=False)
    """Per pattern (`stemflow.subjects`), per relay, its subscribers there."""
    plan: Plan | None = field(default=None, init=False)
    version: int = field(default=0, init=False)
    _planned_links: dict[tuple[str, str], LinkState] = field(default_factory=dict, init=False)
    _rtt_samples: dict[tuple[str, str], deque[tuple[float, float]]] = field(default_factory=dict,
                                                                          init=False)
    _route_ids: RouteIds = field(default_factory=RouteIds, init=False)
    _reported: dict[str, set[str]] = field(default_factory=dict, init=False)
    """Per relay, the topics its last report named (a topic it stops naming is withdrawn)."""
    reports: dict[str, Mapping[str, Any]] = field(default_factory=dict, init=False)
    """Per relay, its last full report (with link measurements), for the status endpoint."""
    _problems: list[Problem] = field(default_factory=list, init=False)
    _dirty: str = field(default="", init=False)
    _last_plan_s: float = field(default=-math.inf, init=False)
    _planner: Planner | None = field(default=None, init=False)

    def handle(self, event: Event, now_s: float) -> list[Action]:
        """Apply one event; return what the caller must do (push tables, log plans)."""
        return self.handle_all((event,), now_s)

    def handle_all(self, events: Iterable[Event], now_s: float) -> list[Action]:
        """Apply events that arrive at the same instant, then re-plan at most once for all.

        A driver that delivers several messages at once (sessions opened together) gets the one
        decision `handle` would have reached after the last of them, not one per message.
        """
        for event in events:
            self._apply(event, now_s)
        actions: list[Action] = list(self._problems)
        self._problems.clear()
        for relay in [r for r, st in self.relays.items()
                      if now_s - st.last_seen_s > self.heartbeat_timeout_s]:
            del self.relays[relay]
            self._reported.pop(relay, None)
            actions.append(RelayDead(relay))
            self._mark(f"relay {relay} missed heartbeats", urgent=True)
        if self._dirty and (self._dirty.startswith("!")
                            or now_s - self._last_plan_s >= self.min_replan_interval_s):
            actions += self._replan(now_s)
        return actions

    def _apply(self, event: Event, now_s: float) -> None:
        match event:
            case RelayJoined(relay, address):
                if relay not in self.net.datacenters:  # learnt, not configured: routable once measured
                    self.net = replace(self.net, datacenters=(*self.net.datacenters, relay))
                self.relays[relay] = _Relay(address, now_s)
                self._mark(f"relay {relay} joined", urgent=True)
            case RelayLeft(relay):
                self._reported.pop(relay, None)
                if self.relays.pop(relay, None) is not None:
                    self._mark(f"relay {relay} left", urgent=True)
            case Heartbeat(relay):
                if relay in self.relays:
                    self.relays[relay].last_seen_s = now_s
            case LinkReport():
                if event.relay in self.relays:
                    self.relays[event.relay].last_seen_s = now_s
                    self._measure(event, now_s)
            case Interest():
                self._interest(event)
            case Report(relay, body):
                if relay in self.relays:
                    self.relays[relay].last_seen_s = now_s
                    self._report(relay, body, now_s)
            case Tick():
                pass

    # -- state updates --------------------------------------------------------------------------

    def _mark(self, reason: str, urgent: bool = False) -> None:
        if urgent:
            self._dirty = "!" + reason
        elif not self._dirty:
            self._dirty = reason

    def _measure(self, r: LinkReport, now_s: float) -> None:
        edge = (r.relay, r.peer)
        if r.rtt_ms is not None:
            r = replace(r, rtt_ms=self._min_rtt(edge, r.rtt_ms, now_s))
        old = self.net.links.get(edge)
        if old is None:
            if r.rtt_ms is None:
                return
            old = LinkState(r.rtt_ms, r.bandwidth_mbps or math.inf, r.loss or 0.0)
        new = LinkState(old.rtt_ms if r.rtt_ms is None else r.rtt_ms,
                        old.bandwidth_mbps if r.bandwidth_mbps is None else r.bandwidth_mbps,
                        old.loss if r.loss is None else r.loss)
        if new == old and edge in self.net.links:
            return
        self.net = self.net.with_links({edge: new})
        base = self._planned_links.get(edge)
        if base is None or _moved(base, new, self.replan_threshold):
            self._mark(f"link {r.relay}->{r.peer} changed")

    def _min_rtt(self, edge: tuple[str, str], rtt_ms: float, now_s: float) -> float:
        """The least RTT the link showed within `RTT_FILTER_S`: its propagation delay."""
        window = self._rtt_samples.setdefault(edge, deque())
        while window and window[-1][1] >= rtt_ms:
            window.pop()  # a monotone deque: the front is always the window's minimum
        window.append((now_s, rtt_ms))
        while window[0][0] < now_s - self.rtt_filter_s:
            window.popleft()
        return window[0][1]

    def _report(self, relay: str, body: Mapping[str, Any], now_s: float) -> None:
        """Turn one report into the events it stands for; skip (and say) what is malformed."""
        if not isinstance(body, Mapping):
            self._problems.append(Problem(relay, "report is not a JSON object"))
            return
        links = body.get("links")
        if links is not None:
            self.reports[relay] = body
            for item in links if isinstance(links, list) else [links]:
                link = _link_report(relay, item)
                if isinstance(link, str):
                    self._problems.append(Problem(relay, link))
                elif link is not None:
                    self._measure(link, now_s)
        seen: set[str] = set()
        items = body.get("interest") or []
        for item in items if isinstance(items, list) else [items]:
            interest = _interest_item(relay, item)
            if isinstance(interest, str):
                self._problems.append(Problem(relay, interest))
                continue
            seen.add(interest.topic)
            self._interest(interest)
        for topic in self._reported.get(relay, set()) - seen:
            self._interest(Interest(relay, topic, 0, 0))
        self._reported[relay] = seen

    def _interest(self, i: Interest) -> None:
        if is_pattern(i.topic):
            self._pattern_interest(i)
            return
        per_relay = self.interest.setdefault(i.topic, {})
        before = per_relay.get(i.relay)
        if i.publishers or i.subscribers:
            per_relay[i.relay] = i
        else:
            per_relay.pop(i.relay, None)
        if not per_relay:
            del self.interest[i.topic]
        new_publisher = bool(i.publishers) != bool(before is not None and before.publishers)
        self._redemand(i.topic, new_publisher)

    def _pattern_interest(self, i: Interest) -> None:
        per_relay = self.patterns.setdefault(i.topic, {})
        if i.subscribers:
            per_relay[i.relay] = i
        else:
            per_relay.pop(i.relay, None)
        if not per_relay:
            del self.patterns[i.topic]
        for topic in [t for t in self.interest if matches(i.topic, t)]:
            self._redemand(topic)

    def _redemand(self, topic: str, new_publisher: bool = False) -> None:
        """Re-derive the sessions of `topic` from what relays said; re-plan if they changed
        (or a publisher appeared or went: its table must say where its topic goes)."""
        old = {name: d for name, d in self.sessions.items() if d.wire_topic == topic}
        new = _demands_from_interest(topic, _with_patterns(
            topic, self.interest.get(topic, {}), self.patterns))
        if new != old or new_publisher:
            for name in old:
                del self.sessions[name]
            self.sessions.update(new)
            self._mark(f"interest in {topic} changed", urgent=True)

    # -- planning -------------------------------------------------------------------------------

    def routable(self) -> tuple[NetworkState, list[Demand]]:
        """The overlay among live relays, and the sessions whose ends are all live."""
        net = self.net
        for dc in net.datacenters:
            if dc not in self.relays:
                net = net.without(dc)
        alive = set(net.datacenters)
        demands = [d for d in self.sessions.values()
                   if d.source in alive and all(s in alive for s in d.sinks)]
        return net, demands

    def _replan(self, now_s: float) -> list[Action]:
        reason = self._dirty.lstrip("!")
        self._dirty = ""
        self._last_plan_s = now_s
        net, demands = self.routable()
        try:
            self._planner = self._planner or Planner(self.strategy, self.options)
            plan = self._planner.plan(net, demands) if demands else Plan(self.strategy, {}, {})
            routed = {**plan.sessions, **best_effort_sessions(net, demands, plan.sessions)}
            self.version += 1
            tables = compile_tables(routed, demands, self.version, self._route_ids, now_s)
        except Exception as e:  # a failing strategy must not take the control plane down
            self._mark(f"retry after a failed plan ({reason})")  # the next event tries again
            return [PlanFailed(reason, f"{type(e).__name__}: {e}", now_s)]
        plan = replace(plan, version=self.version, tables=self._mark_unrouted(tables))
        self.plan = plan
        self._planned_links = dict(net.links)
        empty = RelayTable("", self.version, {}, {})
        actions: list[Action] = [PlanComputed(plan, reason, now_s)]
        actions += [PushTable(r, plan.tables.get(r, replace(empty, relay=r)))
                    for r in sorted(self.relays)]
        return actions

    def _mark_unrouted(self, tables: dict[str, RelayTable]) -> dict[str, RelayTable]:
        """Name, in each relay's table, the topics it publishes that no route leaves it for:
        nobody at another live relay subscribes, so its frames have nowhere to wait for."""
        out = dict(tables)
        for topic, per_relay in self.interest.items():
            for relay, i in per_relay.items():
                if not i.publishers or relay not in self.relays:
                    continue
                t = out.get(relay) or RelayTable(relay, self.version, {}, {})
                if topic not in t.ingress:
                    out[relay] = replace(t, ingress={**t.ingress, topic: ()})
        return out

    def status(self) -> dict:
        """A JSON-ready view for the status endpoint: relays, links, sessions, plan."""
        plan = self.plan
        return {
            "version": self.version,
            "strategy": self.strategy,
            "reports": dict(self.reports),
            "relays": {r: {"address": s.address, "last_seen_s": s.last_seen_s}
                       for r, s in sorted(self.relays.items())},
            "links": [{"src": a, "dst": b, "rtt_ms": s.rtt_ms, "loss": s.loss,
                       "bandwidth_mbps": s.bandwidth_mbps,
                       "capacity_mbps": self.net.capacity_mbps(a, b)}
                      for (a, b), s in sorted(self.net.links.items())
                      if a in self.relays and b in self.relays],
            "patterns": {p: {r: i.subscribers for r, i in sorted(per.items())}
                         for p, per in sorted(self.patterns.items())},
            "sessions": [{"id": d.session, "topic": d.wire_topic, "source": d.source,
                          "sinks": list(d.sinks),
                          "rate_mbps": plan.sessions[d.session].rate_mbps
                          if plan and d.session in plan.sessions else None}
                         for d in self.sessions.values()],
            "plan": None if plan is None else {
                "solver": plan.stats.solver, "solve_s": plan.stats.total_s,
                "paths": {sid: [{"hops": list(p.hops), "rate_mbps": p.rate_mbps} for p in sp.paths]
                          for sid, sp in plan.sessions.items()},
                "trees": {sid: [{"edges": [list(e) for e in t.edges], "rate_mbps": t.rate_mbps}
                                for t in sp.trees]
                          for sid, sp in plan.sessions.items() if sp.trees},
            },
        }


def _moved(old: LinkState, new: LinkState, threshold: float) -> bool:
    def rel(a: float, b: float) -> float:
        if a == b:
            return 0.0
        return abs(a - b) / max(abs(a), 1e-9)
    return (rel(old.rtt_ms, new.rtt_ms) > threshold
            or rel(old.bandwidth_mbps, new.bandwidth_mbps) > threshold
            or abs(old.loss - new.loss) > threshold * max(old.loss, 1e-3))


def _with_patterns(topic: str, interest: Mapping[str, Interest],
                   patterns: Mapping[str, Mapping[str, Interest]]) -> list[Interest]:
    """The interest of each relay in `topic`: what it said of the topic itself, plus the
    subscribers of its patterns that cover the topic (one item per relay)."""
    by_relay = dict(interest)
    for pattern, per_relay in patterns.items():
        if not matches(pattern, topic):
            continue
        for relay, p in per_relay.items():
            i = by_relay.get(relay)
            by_relay[relay] = (replace(p, topic=topic) if i is None
                               else replace(i, subscribers=i.subscribers + p.subscribers))
    return list(by_relay.values())


def _demands_from_interest(topic: str, interests: Iterable[Interest]) -> dict[str, Demand]:
    """The sessions of one topic: one per relay with publishers, to every other relay with
    subscribers (the ingress relay serves its own subscribers itself).

    A topic published at one relay is one session named after the topic; published at several,
    each ingress relay's session is named `topic@relay`, and all travel under the topic.
    """
    items = sorted(interests, key=lambda i: i.relay)
    sources = [i for i in items if i.publishers]
    demands: dict[str, Demand] = {}
    for src in sources:
        sink_items = [i for i in items if i.subscribers and i.relay != src.relay]
        if not sink_items:
            continue
        sinks = tuple(i.relay for i in sink_items)
        involved = [src, *sink_items]
        name = topic if len(sources) == 1 else f"{topic}@{src.relay}"
        priority = max((i.priority for i in involved), key=lambda p: p is Priority.DELAY_SENSITIVE)
        cap = min(i.max_rate_mbps for i in involved)
        if priority is Priority.DELAY_SENSITIVE and math.isinf(src.max_rate_mbps):
            cap = min(cap, DEFAULT_DELAY_SENSITIVE_RATE_MBPS)
        budgets = [i.latency_budget_ms for i in involved if i.latency_budget_ms is not None]
        demands[name] = Demand(
            session=name, source=src.relay, sinks=sinks, publisher=f"{src.relay}/pub",
            subscribers=tuple(f"{s}/sub" for s in sinks), multicast=len(sinks) > 1,
            max_rate_mbps=cap, priority=priority,
            latency_budget_ms=min(budgets) if budgets else None,
            topic="" if name == topic else topic)
    return demands


def interests_of(demand: Demand, subscribers_at: Mapping[str, int] | None = None) -> list[Interest]:
    """The `Interest` each relay of a session reports while it is open: what a modelled relay
    (the simulator's) says, in the words a real relay's report uses. `subscribers_at`: the
    subscribers per sink relay (one each if not given); withdraw with `withdrawn`."""
    subs = dict(subscribers_at or dict.fromkeys(demand.sinks, 1))
    out = [Interest(demand.source, demand.wire_topic, 1, subs.pop(demand.source, 0),
                    demand.priority, demand.max_rate_mbps, demand.latency_budget_ms)]
    out += [Interest(r, demand.wire_topic, 0, n, demand.priority) for r, n in subs.items()]
    return out


def withdrawn(demand: Demand) -> list[Interest]:
    """The `Interest` that ends a session at each of its relays."""
    return [Interest(r, demand.wire_topic, 0, 0) for r in dict.fromkeys((demand.source, *demand.sinks))]


def _link_report(relay: str, item: object) -> LinkReport | str | None:
    """One link measurement of a report; a string says why it is unusable (`security.schema`
    rules: a negative or non-finite RTT is refused, not read as "not measured"). A relay
    describes only its own links: the report's relay is the link's source, never its peer.
    Routing takes the kernel's minimum RTT where given: ping RTTs queue behind our own data and
    would make near-equal paths flap under load."""
    if not isinstance(item, Mapping):
        return f"link report is not an object: {_short(item)}"
    try:
        peer = relay_name(item.get("peer"), "link report: peer")
        if peer == relay:
            return f"link report from {relay} to itself"
        rtt = measurement(item.get("min_rtt_ms"), f"link to {peer}: min_rtt_ms")
        if rtt is None:
            rtt = measurement(item.get("rtt_ms"), f"link to {peer}: rtt_ms")
        return LinkReport(relay, peer, rtt, measurement(item.get("loss"), f"link to {peer}: loss", 1.0),
                          None, measurement(item.get("delivered_mbps"), f"link to {peer}: delivered_mbps"))
    except SchemaError as e:
        return str(e)


def _interest_item(relay: str, item: object) -> Interest | str:
    if not isinstance(item, Mapping):
        return f"interest item is not an object: {_short(item)}"
    topic, pubs, subs = item.get("topic"), item.get("publishers"), item.get("subscribers")
    if not isinstance(topic, str) or not topic:
        return f"interest without a topic: {_short(item)}"
    if not (_count(pubs) and _count(subs)):
        return f"interest in {topic!r}: publishers and subscribers must be counts ≥ 0"
    if is_pattern(topic):
        try:
            validate_pattern(topic)
        except PatternError as e:
            return f"interest in a malformed pattern: {e}"
        if pubs:
            return f"interest in {topic!r}: a pattern has subscribers only, not publishers"
    try:
        priority = Priority(item.get("priority", Priority.BULK))
    except ValueError:
        return f"interest in {topic!r}: unknown priority {_short(item.get('priority'))}"
    cap = _measurement(item.get("max_rate_mbps"))
    return Interest(relay, topic, int(pubs), int(subs), priority,
                    math.inf if cap is None else cap, _measurement(item.get("latency_budget_ms")))


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _measurement(v: object, most: float = math.inf) -> float | None:
    """A finite number in [0, most], else None ("not measured")."""
    if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= most and math.isfinite(v):
        return float(v)
    return None


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."
