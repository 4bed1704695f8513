"""Emulated WAN links behind one Mininet `Link` interface, and the choice between them.

Owns how a link's configured shape (rate, one-way delay, loss, drop-tail queue, per direction)
becomes a working link between two Mininet hosts. Two flavours, as small subclasses of Mininet's
`Link`, constructed alike (`cls(node1, node2, shape=..., registry=..., params1=..., params2=...)`):

- `NetemLink`: Mininet's `TCLink` (HTB for the rate, netem for delay, loss and the queue), for
  kernels with sch_netem. Every tc command is checked: an error raises instead of being logged
  and ignored, as Mininet's `TCIntf` would do.
- `UserspaceLink`: two TUN devices owned by one `stemflow.emu.delayline` process, for kernels
  without sch_netem (this one).

`netem_available()` probes the kernel once in a throwaway namespace; `link_class()` picks the
backend or refuses a forced one that cannot work. Addresses and routes are the topology's job
(`stemflow.emu.topology`); keeping track of processes for teardown is `stemflow.emu.cleanup`'s.
"""

from __future__ import annotations

import functools
import json
import math
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from mininet.link import Intf, Link, TCIntf, TCLink
from stemflow.emu.cleanup import Registry
from stemflow.emu.delayline import DEFAULT_MTU, default_queue_bytes

BACKENDS = ("netem", "userspace")
READY_TIMEOUT_S = 10.0
"""A delay line is ready in well under a second; ten covers a machine busy with other runs."""
STOP_TIMEOUT_S = 5.0
MAX_HTB_RATE_MBPS = 100_000.0
"""Mininet's TCIntf refuses (logs and skips) rates above 1 Gbit/s; access links are faster."""


class LinkBackendError(RuntimeError):
    """A link backend that cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Shape:
    """One direction of a link: rate (0 = unlimited), one-way delay, loss, queue (0 = 1 BDP)."""

    rate_mbps: float
    delay_ms: float
    loss: float = 0.0
    queue_bytes: int = 0

    @property
    def queue_limit_bytes(self) -> int:
        if self.queue_bytes:
            return self.queue_bytes
        return default_queue_bytes(self.rate_mbps * 1e6, 2 * self.delay_ms / 1e3)


@dataclass(frozen=True)
class LinkShape:
    """Both directions of a link: `ab` shapes what node1 sends to node2, `ba` the reverse."""

    ab: Shape
    ba: Shape

    @classmethod
    def symmetric(cls, rate_mbps: float, rtt_ms: float, loss: float = 0.0,
                  queue_bytes: int = 0) -> LinkShape:
        one = Shape(rate_mbps, rtt_ms / 2, loss, queue_bytes)
        return cls(one, one)

    def scaled(self, factor: float) -> LinkShape:
        """The same link with every rate (and the BDP-sized default queue) times `factor`."""
        def f(s: Shape) -> Shape:
            return Shape(s.rate_mbps * factor, s.delay_ms, s.loss, int(s.queue_bytes * factor))
        return LinkShape(f(self.ab), f(self.ba))


# ---------------------------------------------------------------------------------------------
# Kernel probe and backend choice


@functools.cache
def netem_available() -> bool:
    """Whether this kernel can attach a netem qdisc (probed once, in a throwaway namespace).

    `unshare --net` gives tc a fresh namespace that dies with it, so nothing is left behind and
    no real interface is touched.
    """
    probe = ["unshare", "--net", "--", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", "1ms"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def link_class(backend: str = "auto") -> type[ShapedLink]:
    """The link class for `backend` ('auto', 'netem' or 'userspace')."""
    if backend == "auto":
        backend = "netem" if netem_available() else "userspace"
    if backend == "netem":
        if not netem_available():
            raise LinkBackendError(
                "link backend 'netem' was asked for, but this kernel has no sch_netem (adding a "
                "netem qdisc failed); use --link-backend userspace, or load it: modprobe sch_netem")
        return NetemLink
    if backend == "userspace":
        return UserspaceLink
    raise LinkBackendError(f"unknown link backend {backend!r}; choose one of {BACKENDS} or auto")


# ---------------------------------------------------------------------------------------------
# The common constructor


class ShapedLink(Link):
    """A Mininet link that carries a `LinkShape`; subclasses decide how it is realized."""

    backend = ""

    def __init__(self, node1: Any, node2: Any, shape: LinkShape, registry: Registry | None = None,
                 **params: Any):
        self.shape, self.registry = shape, registry
        super().__init__(node1, node2, **self._intf_params(params))

    def _intf_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def reshape(self, shape: LinkShape, down: bool = False) -> None:
        """Change the running link (a fault): the backends that can, override this."""
        raise LinkBackendError(f"the {self.backend} link backend cannot change a running link; "
                               "use --link-backend userspace for link faults")


# ---------------------------------------------------------------------------------------------
# netem


class CheckedTCIntf(TCIntf):
    """A TCIntf that raises when a tc command fails instead of logging and going on."""

    bwParamMax = MAX_HTB_RATE_MBPS  # noqa: N815 (Mininet's attribute name)

    def config(self, **params: Any) -> dict[str, Any]:
        result = super().config(**params) or {}
        failed = [out for out in result.get("tcoutputs", []) if out.strip()]
        if failed:
            raise LinkBackendError(f"tc failed on {self.node.name}:{self.name}: {failed}")
        if params.get("delay") or params.get("loss"):
            shown = self.tc("%s qdisc show dev %s")
            if "netem" not in shown:
                raise LinkBackendError(f"{self.node.name}:{self.name}: no netem qdisc after "
                                       f"configuration (delay/loss would be ignored): {shown}")
        return result


class NetemLink(ShapedLink, TCLink):
    """HTB + netem on each end's egress: node1's interface shapes a->b, node2's b->a."""

    backend = "netem"

    def _intf_params(self, params: dict[str, Any]) -> dict[str, Any]:
        def tc(s: Shape) -> dict[str, Any]:
            # netem holds the packets in flight (rate x one-way delay) as well as the queue, so
            # its packet limit covers both
            in_flight = s.rate_mbps * 1e6 * s.delay_ms / 1e3 / 8
            limit = math.ceil((in_flight + s.queue_limit_bytes) / DEFAULT_MTU)
            out: dict[str, Any] = {"delay": f"{s.delay_ms:g}ms", "max_queue_size": max(1, limit)}
            if s.rate_mbps:
                out["bw"] = s.rate_mbps
            if s.loss:
                out["loss"] = s.loss * 100  # Mininet takes percent
            return out

        p1 = {**params.pop("params1", {}), **tc(self.shape.ab)}
        p2 = {**params.pop("params2", {}), **tc(self.shape.ba)}
        return {**params, "params1": p1, "params2": p2, "cls1": CheckedTCIntf,
                "cls2": CheckedTCIntf}


# ---------------------------------------------------------------------------------------------
# user space


class UserspaceLink(ShapedLink):
    """Two TUN devices, one in each node's namespace, joined by a delay-line process."""

    backend = "userspace"

    def makeIntfPair(self, intfname1: str, intfname2: str, addr1: str | None = None,  # noqa: N802
                     addr2: str | None = None, node1: Any = None, node2: Any = None,
                     deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's signature)
        ab, ba = self.shape.ab, self.shape.ba
        argv = [sys.executable, "-m", "stemflow.emu.delayline",
                "--ns-a", f"/proc/{node1.pid}/ns/net", "--if-a", intfname1,
                "--ns-b", f"/proc/{node2.pid}/ns/net", "--if-b", intfname2,
                "--rate-mbps", repr(ab.rate_mbps), "--delay-ms", repr(ab.delay_ms),
                "--loss", repr(ab.loss), "--queue-bytes", str(ab.queue_bytes),
                "--rate-mbps-ba", repr(ba.rate_mbps), "--delay-ms-ba", repr(ba.delay_ms),
                "--loss-ba", repr(ba.loss), "--queue-bytes-ba", str(ba.queue_bytes), "--commands"]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        if self.registry is not None:
            self.registry.add_process(self.process.pid, f"delay line {intfname1}<->{intfname2}")
        self.stats: dict[str, Any] = {}
        self._await_ready(f"{node1.name}:{intfname1} <-> {node2.name}:{intfname2}")

    def _await_ready(self, what: str) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline and self.process.poll() is None:
            if sel.select(timeout=0.1):
                line = self.process.stdout.readline().strip()
                break
        sel.close()
        if line != "READY":
            self.process.kill()
            _, err = self.process.communicate()
            raise LinkBackendError(f"delay line for {what} did not start: {err.strip() or line}")

    def reshape(self, shape: LinkShape, down: bool = False) -> None:
        """From now on shape the link as `shape` (or, `down`, carry nothing): a fault in the
        scenario (`stemflow.emu.faults`). Packets already on the line keep their delivery time."""
        def one(x: Shape) -> dict[str, Any]:
            return {"rate_mbps": x.rate_mbps, "delay_ms": x.delay_ms, "loss": x.loss,
                    "queue_bytes": x.queue_bytes, "down": down}
        if self.process.poll() is not None or self.process.stdin is None:
            raise LinkBackendError("the delay line has exited; its link cannot be changed")
        self.process.stdin.write(json.dumps({"a2b": one(shape.ab), "b2a": one(shape.ba)}) + "\n")
        self.process.stdin.flush()

    def counters(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """The delay line's counters so far (`stats()` of `stemflow.emu.delayline.DelayLine`:
        per direction `a2b`, `b2a`, packets and bytes in and out), asked on its command pipe;
        what crossed between two calls is the difference."""
        if self.process.poll() is not None or self.process.stdin is None:
            raise LinkBackendError("the delay line has exited; its counters cannot be read")
        self.process.stdin.write('{"stats": true}\n')
        self.process.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout=timeout_s):
                raise LinkBackendError(f"the delay line gave no counters in {timeout_s:g} s")
        finally:
            sel.close()
        return json.loads(self.process.stdout.readline())

    def delete(self) -> None:
        """Stop the delay line (its devices vanish with it) and keep its statistics."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        lines = out.strip().splitlines()
        if lines:
            try:
                self.stats = json.loads(lines[-1])
            except ValueError:
                self.stats = {}
        for intf in (self.intf1, self.intf2):
            if intf is not None:
                intf.node.delIntf(intf)
        self.intf1 = self.intf2 = None


def plain_link(node1: Any, node2: Any, **params: Any) -> Link:
    """An unshaped veth pair (control network)."""
    return Link(node1, node2, intf=Intf, **params)
