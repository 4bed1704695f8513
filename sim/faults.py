"""Faults in simulated time: a scenario's `faults:` played against the modelled overlay.

Owns what a fault does to the simulated world and how the controller comes to know of it, as
it would in reality: relays beat every `HEARTBEAT_INTERVAL_S` and report their links every
`REPORT_INTERVAL_S` (the real relay's constants); the controller declares a silent relay dead
after its one `HEARTBEAT_TIMEOUT_S`. It also samples each session's delivery rate and turns what
it saw into the per-fault outcomes of `stemflow.faults`. The meaning of each fault (what it
touches, the timeline) is `stemflow.faults`'; links, relays and the control plane are
`sim.model`'s.

What each fault does here:
- relay-kill: the process dies, so its control connection closes and the controller hears
  `RelayLeft` half the relay's round trip later; its hops and its clients' access hops carry
  nothing. Its neighbours' connections to it reset, so a session whose route splits into it
  keeps sending: the share that went through it is dropped at the relay before it (as fast as
  the rest of the route lets the session send) until new tables route it elsewhere. That share,
  and what was on the wire into the relay, the publisher sends again once the new tables are in
  (the relays' end-to-end acknowledgements, on by default: `stemflow/relay/acks.py`): the
  transfer grows by it and ends later, and its subscribers lose nothing. Only a transfer whose
  last byte had left before the new tables came loses it (`lost_bytes`): the model resends
  nothing after a transfer's end. A restart re-registers it with no tables, and its hops go
  through slow start again.
- link-down / partition: the hops carry nothing. Relays report a cut hop with loss 1 (TCP
  retransmits everything), so the controller re-plans on the next report. A partition also cuts
  the control connections of the side without the controller: those relays fall silent and are
  declared dead by the heartbeat timeout; once the cut heals they re-register (the controller
  closed their connection) after `RECONNECT_S`.
- link-degrade: the hops carry what the degraded path allows (and, once it is over, what the
  configured path allows, at once: no new slow start); relays report the new RTT (the
  controller's own minimum-RTT filter delays a rise) and loss. Bandwidth is not reported by real
  relays, so a bandwidth-only degradation is never re-planned for.
- controller-stop: whatever reaches the controller is lost and relays keep their tables; a
  restart is a fresh controller, to which every reachable relay re-registers with its interest
  once its `STARTUP_GRACE_S` hold is over.
Egress relays drop the copies a resend brings, so nothing is duplicated and there are no
duplicate rows.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from stemflow.sim.model import World

from stemflow.controller import Controller, Heartbeat, LinkReport, RelayJoined, RelayLeft
from stemflow.controller_server import STARTUP_GRACE_S
from stemflow.faults import (
    FaultEvent,
    FaultOutcome,
    answers,
    cut_from_controller,
    fault_edges,
    resumption,
    timeline,
    touches,
)
from stemflow.network import Edge, LinkState
from stemflow.relay.peers import RECONNECT_S
from stemflow.relay.server import HEARTBEAT_INTERVAL_S, REPORT_INTERVAL_S
from stemflow.scenario import (
    ControllerStop,
    FaultSpec,
    LinkDegrade,
    LinkDown,
    Partition,
    RelayKill,
)

SAMPLE_S = 0.05
"""Delivery rates are sampled this often: a fortieth of the 2 s resumption budget, fine enough
to place a resumption, coarse enough to keep a minute-long run's rows in the thousands."""
CUT_LOSS = 1.0
"""The loss a relay reports for a hop that carries nothing: every segment is a retransmission."""


@dataclass(frozen=True)
class _Leak:
    """A session whose route still splits into a dead relay: that share of what it sends since
    `sent_bytes` is lost until new tables route it elsewhere."""

    fault: int
    route: object
    sent_bytes: float
    share: float
    wire_bytes: float
    """What was on the wire into the dead relay when it died."""


@dataclass
class _Seen:
    """What the injector saw of one fault while it acted."""

    sessions: set[str] = field(default_factory=set)
    lost_bytes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    resent_bytes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """What a session's publisher sent again of what this fault lost on the way."""


class FaultInjector:
    """Plays a scenario's faults against one simulated run and keeps what they did."""

    def __init__(self, world: World, new_controller: Callable[[], Controller]):
        self.world, self.env = world, world.env
        self.new_controller = new_controller
        self.faults = list(world.scenario.faults)
        self.dead: set[str] = set()
        self.silent: dict[str, int] = defaultdict(int)
        """Per relay, the faults that cut its control connection now."""
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        """Per session, its delivery rate (t_s, Mbit/s) every `SAMPLE_S` while it sends."""
        self.propagation: dict[str, list[tuple[float, float]]] = defaultdict(list)
        """Per session, from when (t_s) its route takes how long (s) to the farthest subscriber."""
        self.seen = [_Seen() for _ in self.faults]
        self.cut_since: dict[Edge, float] = {}
        """Per hop cut now, since when."""
        self.leaks: dict[str, _Leak] = {}
        self._sizes: dict[str, float] = {}
        world.on_tables.append(self._settle_leaks)
        self._apply: dict[tuple[type[FaultSpec], bool], Callable[[int, FaultSpec], None]] = {
            (RelayKill, True): self._kill, (RelayKill, False): self._restart,
            (LinkDown, True): self._cut, (LinkDown, False): self._mend,
            (Partition, True): self._partition, (Partition, False): self._heal,
            (LinkDegrade, True): self._degrade, (LinkDegrade, False): self._restore,
            (ControllerStop, True): self._stop, (ControllerStop, False): self._start_controller,
        }

    def start(self) -> None:
        """Start the relays' heartbeats and reports, the sampler and the fault timeline."""
        for relay in sorted(self.world.control.relays):
            self.env.process(self._beat(relay))
            self.env.process(self._report(relay))
        self.env.process(self._sample())
        self.env.process(self._play(timeline(self.faults)))

    # -- liveness, as relays show it --------------------------------------------------------------

    def _beat(self, relay: str):
        while True:
            yield self.env.timeout(HEARTBEAT_INTERVAL_S)
            self.world.control.tell(relay, Heartbeat(relay))

    def _report(self, relay: str):
        net = self.world.network
        while True:
            yield self.env.timeout(REPORT_INTERVAL_S)
            if relay in self.dead:
                continue
            for (a, b), bundle in sorted(net.bundles.items()):
                if a != relay or b in self.dead:
                    continue
                loss = self._loss(bundle.edge, bundle.link.loss)
                self.world.control.tell(relay, LinkReport(relay, b, bundle.link.rtt_ms, loss))

    def _loss(self, edge: Edge, loss: float) -> float:
        """The loss a relay measured on a hop over the last report interval: `CUT_LOSS` for the
        share of it the hop was cut, the path's own loss for the rest."""
        since = self.cut_since.get(edge)
        if since is None:
            return loss
        cut = min(1.0, (self.env.now - since) / REPORT_INTERVAL_S)
        return cut * CUT_LOSS + (1 - cut) * loss

    def _settle_leaks(self, final: bool = False) -> None:
        """Count what each leaking session lost, for those new tables (or the end) stopped."""
        for sid, leak in list(self.leaks.items()):
            flow = self.world.flows.get(sid)
            if flow is None or flow.transfer is None:  # finished: it leaked to its last byte
                sent = self._sizes[sid]
            elif flow.route is not leak.route or flow.transfer.done.triggered or final:
                sent = flow.transfer.sent_at(self.env.now)
            else:
                continue
            gone = (sent - leak.sent_bytes) * leak.share + leak.wire_bytes
            seen = self.seen[leak.fault]
            t = flow.transfer if flow is not None else None
            if t is not None and self.world.fluid.extend(t, gone):
                seen.resent_bytes[sid] += gone
            else:
                seen.lost_bytes[sid] += gone
            del self.leaks[sid]

    def _sample(self):
        routes: dict[str, object] = {}
        for k in itertools.count(1):  # sample times as k x SAMPLE_S, free of summed rounding
            for sid, flow in sorted(self.world.flows.items()):
                t = flow.transfer
                if t is None or t.done.triggered:
                    self._settle_leaks()
                    continue
                self._sizes[sid] = flow.size_bytes
                leak = self.leaks.get(sid)
                self.samples[sid].append((self.env.now, t.rate_mbps * (1 - leak.share if leak else 1)))
                if routes.get(sid) is not flow.route:
                    routes[sid] = flow.route
                    worst = max(flow.last_byte_s(s) for s in flow.session.subscribers)
                    self.propagation[sid].append((self.env.now, worst if math.isfinite(worst) else 0.0))
            yield self.env.timeout(max(0.0, k * SAMPLE_S - self.env.now))

    # -- the timeline -------------------------------------------------------------------------------

    def _play(self, events: list[FaultEvent]):
        for ev in events:
            yield self.env.timeout(ev.at_s - self.env.now)
            if ev.starts:
                self.seen[ev.index].sessions = self._affected(ev.fault)
            self._apply[(type(ev.fault), ev.starts)](ev.index, ev.fault)
            self.world.fluid.commit()

    def _affected(self, fault: FaultSpec) -> set[str]:
        out = set()
        for sid, flow in self.world.flows.items():
            s = flow.session
            ends = [self.world.net.clients[c].datacenter for c in (s.publisher, *s.subscribers)]
            visited = [p for paths in (flow.route.paths.values() if flow.route else ()) for p, _ in paths]
            if touches(fault, visited, ends):
                out.add(sid)
        return out

    def _edges(self, fault: FaultSpec) -> list[Edge]:
        return fault_edges(fault, self.world.network.bundles)

    def _kill(self, i: int, f: FaultSpec) -> None:
        assert isinstance(f, RelayKill)
        w, net = self.world, self.world.network
        dead = {net.bundles[e].resource for e in self._edges(f)}
        for sid, flow in w.flows.items():
            t, route = flow.transfer, flow.route
            if t is None or route is None or t.done.triggered or sid in self.leaks:
                continue
            share = sum(s for e, s in route.hop_share.items() if e[1] == f.relay)
            if not share:
                continue
            into = sum(s * net.bundles[e].link.rtt_ms / 2e3  # on the wire into the relay: gone
                       for e, s in route.hop_share.items() if e[1] == f.relay)
            # its upstream relays' connections to it reset: they drop its share, send the rest
            resources, weights = flow.load_of(route)
            kept = [(r, x) for r, x in zip(resources, weights, strict=True) if r not in dead]
            w.fluid.reroute(t, [r for r, _ in kept], [x for _, x in kept])
            self.leaks[sid] = _Leak(i, route, t.sent_at(self.env.now), share, t.rate_mbps * 1e6 / 8 * into)
        self.dead.add(f.relay)
        w.control.tell(f.relay, RelayLeft(f.relay))  # the kernel closes its control connection
        w.control.deaf.add(f.relay)
        for e in self._edges(f):
            self._cut_edge(e)
        for c in self._clients_at(f.relay):
            w.fluid.set_capacity(net.access_up[c], 0.0)
            w.fluid.set_capacity(net.access_down[c], 0.0)

    def _restart(self, i: int, f: FaultSpec) -> None:
        assert isinstance(f, RelayKill)
        w, net = self.world, self.world.network
        self.dead.discard(f.relay)
        w.control.forget(f.relay)
        for e in self._edges(f):
            self._mend_edge(e)
        for c in self._clients_at(f.relay):
            cap = w.net.clients[c].access.bandwidth_mbps
            w.fluid.set_capacity(net.access_up[c], cap)
            w.fluid.set_capacity(net.access_down[c], cap)
        self._rejoin(f.relay, 0.0)

    def _cut(self, i: int, f: FaultSpec) -> None:
        for e in self._edges(f):
            self._cut_edge(e)

    def _mend(self, i: int, f: FaultSpec) -> None:
        for e in self._edges(f):
            self._mend_edge(e)

    def _cut_edge(self, e: Edge) -> None:
        self.cut_since.setdefault(e, self.env.now)
        self.world.network.cut(e)

    def _mend_edge(self, e: Edge) -> None:
        self.world.network.mend(e)
        if not self.world.network.bundles[e].cuts:
            self.cut_since.pop(e, None)

    def _partition(self, i: int, f: FaultSpec) -> None:
        assert isinstance(f, Partition)
        self._cut(i, f)
        for relay in cut_from_controller(f, self.world.scenario.controller.datacenter):
            self.silent[relay] += 1
            self.world.control.deaf.add(relay)

    def _heal(self, i: int, f: FaultSpec) -> None:
        assert isinstance(f, Partition)
        self._mend(i, f)
        control = self.world.control
        for relay in cut_from_controller(f, self.world.scenario.controller.datacenter):
            self.silent[relay] -= 1
            if self.silent[relay] or relay in self.dead:
                continue
            control.deaf.discard(relay)
            if relay not in control.controller.relays:  # declared dead: its connection was closed
                self._rejoin(relay, RECONNECT_S)

    def _degrade(self, i: int, f: FaultSpec) -> None:
        assert isinstance(f, LinkDegrade)
        net = self.world.network
        for e in self._edges(f):
            base = self.world.net.links[e]
            net.set_link(e, LinkState(base.rtt_ms if f.rtt_ms is None else f.rtt_ms,
                                      base.bandwidth_mbps if f.bandwidth_mbps is None else f.bandwidth_mbps,
                                      base.loss if f.loss is None else f.loss))

    def _restore(self, i: int, f: FaultSpec) -> None:
        for e in self._edges(f):
            self.world.network.set_link(e, self.world.net.links[e])

    def _stop(self, i: int, f: FaultSpec) -> None:
        self.world.control.stopped = True

    def _start_controller(self, i: int, f: FaultSpec) -> None:
        control = self.world.control
        control.controller = self.new_controller()
        control.stopped = False
        for relay in sorted(control.relays):
            if relay not in self.dead and not self.silent[relay]:
                self._rejoin(relay, STARTUP_GRACE_S)

    def _rejoin(self, relay: str, after_s: float) -> None:
        """`relay` registers with the controller `after_s` from now, and reports its interest."""
        def go():
            yield self.env.timeout(after_s)
            control = self.world.control
            if relay in self.dead or self.silent[relay]:
                return
            control.deaf.discard(relay)
            control.tell(relay, RelayJoined(relay, f"sim://{relay}"))
            for interest in control.open_interests(relay):
                control.tell(relay, interest)
        self.env.process(go())

    def _clients_at(self, relay: str) -> list[str]:
        return sorted(c for c, site in self.world.net.clients.items() if site.datacenter == relay)

    # -- what the faults did ------------------------------------------------------------------------

    def outcomes(self) -> list[FaultOutcome]:
        """Per fault and affected session: re-plan, resumption, loss and dip, as this model tells."""
        self._settle_leaks(final=True)
        plans = self.world.control.plans
        out = []
        for i, f in enumerate(self.faults):
            since = f.until_s if isinstance(f, ControllerStop) and f.until_s is not None else f.at_s
            replan = next((p.at_s - f.at_s for p in plans if p.at_s >= since and answers(f, p.reason)),
                          None)
            if not self.seen[i].sessions:
                out.append(FaultOutcome(i, "", replan, None, None, None, None))
            for sid in sorted(self.seen[i].sessions):
                resume, dip = resumption(self.samples[sid], f.at_s)
                if resume:
                    resume += self._propagation(sid, f.at_s + resume)
                lost = self.seen[i].lost_bytes.get(sid, 0.0) if isinstance(f, RelayKill) else None
                out.append(FaultOutcome(i, sid, replan, resume, lost, None, dip))
        return out

    def delivered_bytes(self, sid: str, size_bytes: float) -> float:
        """What a completed session's subscribers got: its size less what the faults lost."""
        return size_bytes - sum(seen.lost_bytes.get(sid, 0.0) for seen in self.seen)

    def _propagation(self, sid: str, at_s: float) -> float:
        """A resumed flow's first byte still has to cross its route to the farthest subscriber."""
        return next((d for t, d in reversed(self.propagation[sid]) if t <= at_s), 0.0)
