"""The emulated network of a scenario: which hosts, which links, which addresses and routes.

Owns two steps. `plan_topology` is pure: from a `Scenario` and a rate scale it decides the hosts
(one per datacenter relay, one per client, one for the controller), the links with their shapes,
every address and every static route. `Emulation` realizes a plan with Mininet's `Host` and a
link backend from `stemflow.emu.links`, sets per-host sysctls, and runs commands inside hosts,
recording every process and namespace in the run's `stemflow.emu.cleanup.Registry`.

Links (all host to host; Mininet with no switch and no OpenFlow controller):
- overlay: relay <-> relay, one per datacenter pair with a link, the scenario's rate, RTT, loss;
- access: client <-> the relay of its datacenter;
- internet: client <-> client, one per client pair, shaped as `NetworkState.internet_path`: the
  direct-TCP baseline's path. A direct link per pair (rather than a shared "internet" host)
  reproduces every pair's configured path exactly, as the simulator models it;
- control: controller <-> every relay, a link with no rate limit and the relay's round trip to
  the controller's datacenter (`stemflow.controller_site`: the shortest-RTT overlay path, as the
  simulator charges it); an unshaped veth where that round trip is 0 (the relay beside the
  controller, or every relay when the scenario places the controller nowhere).

Addressing: each host has one address of its own on `lo` (relays 10.1.0.0/16, clients 10.2.0.0/16,
controller 10.3.0.1), each link a /30 from 10.200.0.0/16, and each host a /32 route to every
neighbour's own address over their shared link. Hosts do not forward, so a packet can only ever
take the one link that joins its two ends: relays reach relays over overlay links, clients reach
their relay over access links and each other over internet links. No host has a default route.

The scenario's TCP window cap (times the rate scale) holds for every connection between two
hosts, whatever process opens it (relays included), as a locked `cwnd` metric on each route:
the kernel clamps a connection's congestion window to it (snd_cwnd_clamp). A socket's
TCP_WINDOW_CLAMP would not do: receive-buffer autotuning raises it again (measured here: the
window grows to 65535 << wscale). The kernel reads locked metrics from its TCP metrics cache,
which holds an entry only after a first connection closes, so `Emulation.start` primes every
route with one connection and checks the cache; `ssthresh lock 0` keeps that cache from carrying
a slow-start threshold from one connection to the next.

Mininet's `Mininet` class is not used: its start-up (`fixLimits`) rewrites sysctls of the root
namespace, which other users of this machine share; hosts, links and interfaces are Mininet's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mininet.node import Host
from stemflow.emu.cleanup import Registry
from stemflow.emu.links import LinkShape, Shape, ShapedLink, UserspaceLink, plain_link

from stemflow.controller_site import controller_rtts_ms
from stemflow.network import NetworkState
from stemflow.scenario import Scenario

Role = Literal["relay", "client", "controller"]
LinkKind = Literal["overlay", "access", "internet", "control"]

RELAY_NET = ipaddress.ip_network("10.1.0.0/16")
CLIENT_NET = ipaddress.ip_network("10.2.0.0/16")
CONTROLLER_ADDRESS = "10.3.0.1"
LINK_NET = ipaddress.ip_network("10.200.0.0/16")
LINK_PREFIX = 30

TCP_BUFFER_MAX_BYTES = 64 * 2**20
"""tcp_rmem/tcp_wmem maximum in every host: far above any window the scenarios need, so a
connection's window is set by the scenario's cap (TCP_WINDOW_CLAMP), not by buffer limits."""
PRIME_PORT = 5999
PRIME_TIMEOUT_S = 30.0
PRIME_POLL_S = 0.1
TCP_BUFFER_DEFAULT_BYTES = 131072  # the kernel's own initial tcp_rmem value; autotuning grows it
TCP_BUFFER_MIN_BYTES = 4096


class TopologyError(RuntimeError):
    pass


@dataclass(frozen=True)
class HostPlan:
    name: str  # Mininet host name (also the prefix of its interface names)
    role: Role
    label: str  # datacenter or client name, "controller" for the controller
    address: str  # the host's own address, on lo
    site: str = ""  # the datacenter: its own for a relay, its relay's for a client


@dataclass(frozen=True)
class LinkPlan:
    kind: LinkKind
    a: str  # host names
    b: str
    shape: LinkShape | None  # None: an unshaped veth
    subnet: str
    address_a: str
    address_b: str


@dataclass(frozen=True)
class TopologyPlan:
    run_id: str
    rate_scale: float
    window_cap_bytes: int  # the scenario's TCP window cap times the rate scale
    mss_bytes: int
    congestion_control: str
    hosts: tuple[HostPlan, ...]
    links: tuple[LinkPlan, ...]
    by_label: dict[str, HostPlan] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_label.update({h.label: h for h in self.hosts})

    def host(self, label: str) -> HostPlan:
        try:
            return self.by_label[label]
        except KeyError:
            raise TopologyError(f"no host for {label!r}; hosts: {sorted(self.by_label)}") from None

    @property
    def cwnd_clamp_segments(self) -> int:
        """The window cap in segments: what every route's locked `cwnd` metric holds."""
        return max(1, math.ceil(self.window_cap_bytes / self.mss_bytes))

    def links_of(self, kind: LinkKind) -> list[LinkPlan]:
        return [ln for ln in self.links if ln.kind == kind]

    def routes(self, host: str) -> list[tuple[str, str, str]]:
        """(destination address, gateway, source address) for each neighbour of `host`."""
        own = {h.name: h.address for h in self.hosts}
        out = []
        for ln in self.links:
            if ln.a == host:
                out.append((own[ln.b], ln.address_b, own[host]))
            elif ln.b == host:
                out.append((own[ln.a], ln.address_a, own[host]))
        return out


def plan_topology(scenario: Scenario, rate_scale: float = 1.0, run_id: str = "0000"
                  ) -> TopologyPlan:
    """Hosts, links, addresses and routes that emulate `scenario` with rates times `rate_scale`."""
    if rate_scale <= 0:
        raise TopologyError(f"rate scale must be > 0, found {rate_scale}")
    net = NetworkState.from_scenario(scenario)
    prefix = f"sf{run_id}"
    hosts: list[HostPlan] = []
    relay_ips, client_ips = RELAY_NET.hosts(), CLIENT_NET.hosts()
    for i, dc in enumerate(net.datacenters):
        hosts.append(HostPlan(f"{prefix}r{i}", "relay", dc, str(next(relay_ips)), dc))
    for j, (c, site) in enumerate(net.clients.items()):
        hosts.append(HostPlan(f"{prefix}c{j}", "client", c, str(next(client_ips)),
                              site.datacenter))
    hosts.append(HostPlan(f"{prefix}k", "controller", "controller", CONTROLLER_ADDRESS))
    name = {h.label: h.name for h in hosts}
    subnets = LINK_NET.subnets(new_prefix=LINK_PREFIX)

    links: list[LinkPlan] = []

    def add(kind: LinkKind, a: str, b: str, shape: LinkShape | None) -> None:
        try:
            sub = next(subnets)
        except StopIteration:
            raise TopologyError(f"more links than {LINK_NET} holds") from None
        ha, hb = list(sub.hosts())[:2]
        links.append(LinkPlan(kind, name[a], name[b], shape and shape.scaled(rate_scale),
                              str(sub), str(ha), str(hb)))

    done: set[frozenset[str]] = set()
    for (a, b), st in net.links.items():
        if frozenset((a, b)) in done:
            continue
        done.add(frozenset((a, b)))
        back = net.links.get((b, a), st)  # a one-way link still needs a path for its ACKs
        add("overlay", a, b, _shape(st.bandwidth_mbps, st.rtt_ms, st.loss, back.bandwidth_mbps,
                                    back.rtt_ms, back.loss))
    for c, site in net.clients.items():
        acc = site.access
        add("access", c, site.datacenter, LinkShape.symmetric(acc.bandwidth_mbps, acc.rtt_ms,
                                                              acc.loss))
    clients = list(net.clients)
    for i, a in enumerate(clients):
        for b in clients[i + 1:]:
            p, q = net.internet_path(a, b), net.internet_path(b, a)
            add("internet", a, b, _shape(p.bandwidth_mbps, p.rtt_ms, p.loss, q.bandwidth_mbps,
                                         q.rtt_ms, q.loss))
    control_rtts_ms = controller_rtts_ms(net, scenario.controller.datacenter)
    for h in hosts:
        if h.role == "relay":
            rtt_ms = control_rtts_ms[h.label]
            add("control", "controller", h.label,
                LinkShape.symmetric(0.0, rtt_ms) if rtt_ms > 0 else None)
    return TopologyPlan(run_id, rate_scale, int(scenario.tcp.rwnd_bytes * rate_scale),
                        int(scenario.tcp.mss_bytes), str(scenario.tcp.congestion_control),
                        tuple(hosts), tuple(links))


def _shape(rate_ab: float, rtt_ab: float, loss_ab: float, rate_ba: float, rtt_ba: float,
           loss_ba: float) -> LinkShape:
    return LinkShape(Shape(rate_ab, rtt_ab / 2, loss_ab), Shape(rate_ba, rtt_ba / 2, loss_ba))


# ---------------------------------------------------------------------------------------------
# Realization


class Emulation:
    """A plan made real: Mininet hosts, shaped links, addresses, routes, sysctls.

    Use as a context manager together with `cleanup.Teardown`; `stop()` stops links and hosts
    in order (the registry teardown catches whatever this misses).
    """

    def __init__(self, plan: TopologyPlan, link_cls: type[ShapedLink], registry: Registry):
        self.plan, self.link_cls, self.registry = plan, link_cls, registry
        self.hosts: dict[str, Host] = {}
        self.links: list[Any] = []
        self.host_default_cc: dict[str, str] = {}  # label -> the host's default congestion control

    # -- building -------------------------------------------------------------------------

    def start(self) -> Emulation:
        for hp in self.plan.hosts:
            host = Host(hp.name, inNamespace=True)
            self.hosts[hp.name] = host
            self.registry.add_process(host.pid, f"host {hp.name} ({hp.label})")
            self.registry.add_namespace(host.pid, f"{hp.name} ({hp.label})")
        for ln in self.plan.links:
            a, b = self.hosts[ln.a], self.hosts[ln.b]
            p1 = {"ip": f"{ln.address_a}/{LINK_PREFIX}"}
            p2 = {"ip": f"{ln.address_b}/{LINK_PREFIX}"}
            if ln.shape is None:
                link = plain_link(a, b, params1=p1, params2=p2)
            else:
                link = self.link_cls(a, b, shape=ln.shape, registry=self.registry,
                                     params1=p1, params2=p2)
            self.links.append(link)
        for hp in self.plan.hosts:
            self._configure(hp)
        self._prime_window_caps()
        return self

    def _prime_window_caps(self) -> None:
        """One connection per link, so that every route's locked cwnd is in the metrics cache."""
        probe = [sys.executable, "-m", "stemflow.emu.probe"]
        callers: dict[str, list[str]] = {}
        callees: dict[str, int] = {}
        name_to_label = {h.name: h.label for h in self.plan.hosts}
        for ln in self.plan.links:
            a, b = name_to_label[ln.a], name_to_label[ln.b]
            callers.setdefault(a, []).append(f"{self.address(b)}:{PRIME_PORT}")
            callees[b] = callees.get(b, 0) + 1
        sinks = []
        for label, count in callees.items():
            p = self.popen(label, [*probe, "tcp-sink", "--listen", f"{self.address(label)}:"
                                   f"{PRIME_PORT}", "--count", str(count)], what="primer sink")
            if p.stdout is None or p.stdout.readline().strip() != "READY":
                raise TopologyError(f"{label}: primer sink did not start: {p.communicate()}")
            sinks.append(p)
        for label, targets in callers.items():
            self.run(label, [*probe, "tcp-touch", *targets])
        for p in sinks:
            p.communicate(timeout=PRIME_TIMEOUT_S)
        cwnd = f"cwnd {self.plan.cwnd_clamp_segments}"
        deadline = time.monotonic() + PRIME_TIMEOUT_S
        pending = {hp.label: {dest for dest, _, _ in self.plan.routes(hp.name)}
                   for hp in self.plan.hosts}
        while pending:
            # an entry appears when its connection is fully closed: up to an RTT after the FIN
            for label in list(pending):
                cache = self.run(label, ["ip", "tcp_metrics", "show"])
                pending[label] -= {ln.split()[0] for ln in cache.splitlines() if cwnd in ln}
                if not pending[label]:
                    del pending[label]
            if pending and time.monotonic() > deadline:
                raise TopologyError(f"the window cap is not in force on these routes: {pending}")
            if pending:
                time.sleep(PRIME_POLL_S)

    def _configure(self, hp: HostPlan) -> None:
        buffers = f"{TCP_BUFFER_MIN_BYTES} {TCP_BUFFER_DEFAULT_BYTES} {TCP_BUFFER_MAX_BYTES}"
        self.run(hp.label, ["ip", "link", "set", "lo", "up"])
        self.run(hp.label, ["ip", "addr", "add", f"{hp.address}/32", "dev", "lo"])
        self.run(hp.label, ["sysctl", "-q", "-w", f"net.ipv4.tcp_rmem={buffers}",
                            f"net.ipv4.tcp_wmem={buffers}",
                            "net.ipv4.tcp_no_metrics_save=0", "net.ipv4.ip_forward=0"])
        # Congestion control is chosen per socket (TCP_CONGESTION) by every process we start.
        # The host default would back that up, but a container may forbid setting it (EPERM),
        # so it is tried and its outcome recorded for the manifest.
        cc_key, cc = "net.ipv4.tcp_congestion_control", self.plan.congestion_control
        with contextlib.suppress(TopologyError):
            self.run(hp.label, ["sysctl", "-q", "-w", f"{cc_key}={cc}"])
        self.host_default_cc[hp.label] = self.run(hp.label, ["sysctl", "-n", cc_key]).strip()
        clamp = str(self.plan.cwnd_clamp_segments)
        for dest, gateway, source in self.plan.routes(hp.name):
            self.run(hp.label, ["ip", "route", "add", f"{dest}/32", "via", gateway, "src", source,
                                "cwnd", "lock", clamp, "ssthresh", "lock", "0"])

    def stop(self) -> None:
        for link in self.links:
            if isinstance(link, UserspaceLink):
                link.delete()  # veth and netem links vanish with their namespaces
        for host in self.hosts.values():
            host.terminate()
        self.links, self.hosts = [], {}

    def __enter__(self) -> Emulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running things inside hosts -----------------------------------------------------

    def host(self, label: str) -> Host:
        return self.hosts[self.plan.host(label).name]

    def address(self, label: str) -> str:
        return self.plan.host(label).address

    def run(self, label: str, argv: Sequence[str], timeout: float = 60.0) -> str:
        """Run `argv` inside the host of `label`, wait, and return its stdout; raise on failure."""
        host = self.host(label)
        proc = host.popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise TopologyError(f"{label}: {' '.join(argv)}: no answer in {timeout} s") from None
        if proc.returncode != 0:
            raise TopologyError(f"{label}: {' '.join(argv)} failed ({proc.returncode}): "
                                f"{err.strip()}")
        return out

    def popen(self, label: str, argv: Sequence[str], what: str = "", **kwargs: Any
              ) -> subprocess.Popen:
        """Start `argv` inside the host of `label` and register it for teardown."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        proc = self.host(label).popen(list(argv), **kwargs)
        self.registry.add_process(proc.pid, what or f"{argv[0]} in {label}")
        return proc

    def link_between(self, a: str, b: str) -> Any:
        """The link joining the hosts of labels `a` and `b`."""
        names = {self.plan.host(a).name, self.plan.host(b).name}
        for link in self.links:
            if {link.intf1.node.name, link.intf2.node.name} == names:
                return link
        raise TopologyError(f"no link between {a!r} and {b!r}")

    def egress_bytes(self, site: str) -> int | None:
        """Bytes sent so far out of datacenter `site` to the others, as the delay lines count
        them (IP packets): over its relay's overlay links and its clients' Internet links. None
        when one of those links counts nothing (netem, veth): the source egress of a broadcast
        is the difference between two calls."""
        hosts = {h.name: h for h in self.plan.hosts}
        total = 0
        for plan, link in zip(self.plan.links, self.links, strict=True):
            if plan.kind not in ("overlay", "internet"):
                continue
            a, b = hosts[plan.a].site, hosts[plan.b].site
            if (a == site) == (b == site):
                continue
            if not isinstance(link, UserspaceLink):
                return None
            stats = link.counters()
            total += int(stats["a2b" if a == site else "b2a"]["tx_bytes"])
        return total

    def link_stats(self) -> list[dict[str, Any]]:
        return [getattr(ln, "stats", {}) for ln in self.links]
