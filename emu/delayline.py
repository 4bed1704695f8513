"""A user-space WAN link: one process, two TUN devices, loss + paced drop-tail queue + delay.

Owns one emulated link between two network namespaces (the kernel here has no sch_netem). It
creates a TUN device inside each namespace (by entering it with setns), and moves IP packets
between them; per direction a packet meets, in order:

    Bernoulli loss  ->  drop-tail byte queue served at the link rate  ->  one-way delay

The scheduling arithmetic (`Scheduler`) is pure and knows nothing of devices, so it is unit
tested on its own; `Direction` joins a scheduler to a pair of file descriptors; `DelayLine` owns
the devices, one epoll loop and the signals. Addresses, routes and the rest of the interface
configuration belong to `stemflow.emu.links` (Mininet interfaces); starting and killing this
process to `stemflow.emu.links` and `stemflow.emu.cleanup`.

With no loss the devices use IFF_VNET_HDR with TSO offload, so TCP super-packets (up to 64 KiB)
pass through whole and are charged their on-wire size (headers of every segment); with loss the
kernel segments first and every 1500-byte packet draws its own loss.

The devices are not persistent: they vanish when this process exits, however it exits. On start
it prints ``READY``; on SIGTERM or SIGINT it prints one JSON line of statistics and exits 0.
With ``--commands`` it reads new parameters for both directions on stdin while it runs (a
fault takes the link down or degrades it; `CommandReader`). A loss set while running applies
to packets as read: on a link that started lossless, whole GSO super-packets.

Run: ``python -m stemflow.emu.delayline --ns-a /proc/PID/ns/net --if-a A --ns-b ... --if-b B
--rate-mbps 100 --delay-ms 25 [--loss 0.01]`` (per-direction overrides: ``--rate-mbps-ba`` etc.).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import math
import os
import random
import select
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# ---------------------------------------------------------------------------------------------
# Kernel interface constants (linux/if_tun.h, linux/sched.h, linux/prctl.h)

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
IFNAMSIZ = 16

VNET_HDR_LEN = 10
"""struct virtio_net_hdr without mergeable buffers: the default header size of a TUN device."""
VNET_GSO_NONE = 0
IPV4_HEADER_MIN = 20
IPV6_HEADER_LEN = 40

# ---------------------------------------------------------------------------------------------
# Behaviour constants

MAX_PACKET_BYTES = 65535
"""Largest IP datagram, hence the largest GSO super-packet a TUN device hands us (no BIG TCP)."""
READ_BYTES = MAX_PACKET_BYTES + VNET_HDR_LEN + 1
"""One read always holds a whole packet; the extra byte makes truncation detectable."""
MIN_QUEUE_BYTES = 2 * MAX_PACKET_BYTES
"""The queue must hold one super-packet in service and accept the next one, or GSO bursts on
small-BDP links would be dropped whole."""
READ_BUDGET = 256
"""Packets read from one device per wake-up, so that one busy direction cannot starve the
other or delay due deliveries by more than about a quarter of a millisecond."""
EARLY_RELEASE_S = 0.0005
"""epoll waits in whole milliseconds, rounded up (up to 1 ms late). Releasing a packet up to
0.5 ms before it is due centres that error: delivery lands within +-0.5 ms of exact (measured:
+0.35 ms per direction with 0.3 ms, the rest being the loop's own latency)."""
DEFAULT_MTU = 1500


class DelayLineError(RuntimeError):
    """A link that cannot be set up; the message says which device, namespace and why."""


# ---------------------------------------------------------------------------------------------
# The pure part: loss, the paced queue and the delay of one direction


@dataclass(frozen=True)
class DirectionParams:
    """What one direction of the link does to packets.

    rate_bps: serialization rate; 0 means unlimited (no queue). delay_s: one-way propagation.
    loss: Bernoulli drop probability per packet. queue_bytes: drop-tail limit (0 = default).
    """

    rate_bps: float
    delay_s: float
    loss: float = 0.0
    queue_bytes: int = 0
    down: bool = False
    """The link carries nothing (a fault took it down): every packet is lost."""

    def __post_init__(self) -> None:
        if self.rate_bps < 0 or self.delay_s < 0:
            raise ValueError(f"rate and delay must be >= 0, found {self.rate_bps}, {self.delay_s}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be a probability in [0, 1), found {self.loss}")
        if self.queue_bytes < 0:
            raise ValueError(f"queue_bytes must be >= 0, found {self.queue_bytes}")

    @property
    def queue_limit_bytes(self) -> int:
        """The drop-tail limit: as given, or one bandwidth-delay product of the round trip."""
        if self.queue_bytes:
            return self.queue_bytes
        return default_queue_bytes(self.rate_bps, 2 * self.delay_s)


def default_queue_bytes(rate_bps: float, rtt_s: float) -> int:
    """One bandwidth-delay product, the classic router buffer, but never below MIN_QUEUE_BYTES."""
    return max(MIN_QUEUE_BYTES, int(rate_bps * rtt_s / 8))


@dataclass
class DirectionStats:
    """Counters of one direction; `lost` are random losses, `queue_drops` overflowing the queue."""

    rx: int = 0
    rx_bytes: int = 0
    lost: int = 0
    queue_drops: int = 0
    tx: int = 0
    tx_bytes: int = 0
    write_errors: int = 0
    max_backlog_bytes: int = 0


@dataclass
class Scheduler:
    """Decides, for each arriving packet, whether it is lost or dropped, and when it arrives.

    The queue is a virtual one: the time `busy_until` at which the serializer is free again.
    Its backlog in bytes is the remaining busy time at the link rate, so no per-packet queue
    bookkeeping is needed beyond the delay line itself.
    """

    params: DirectionParams
    random: Callable[[], float] = field(default_factory=lambda: random.Random().random)
    busy_until: float = 0.0
    stats: DirectionStats = field(default_factory=DirectionStats)

    def backlog_bytes(self, now: float) -> float:
        """Bytes still waiting for (or in) serialization at time `now`."""
        rate = self.params.rate_bps
        return max(0.0, self.busy_until - now) * rate / 8 if rate else 0.0

    def admit(self, now: float, wire_bytes: int) -> float | None:
        """The delivery time of a packet of `wire_bytes` arriving at `now`, or None if dropped."""
        p, st = self.params, self.stats
        st.rx += 1
        st.rx_bytes += wire_bytes
        if p.down or (p.loss and self.random() < p.loss):
            st.lost += 1
            return None
        if not p.rate_bps:
            return now + p.delay_s
        backlog = self.backlog_bytes(now)
        if backlog + wire_bytes > p.queue_limit_bytes:
            st.queue_drops += 1
            return None
        st.max_backlog_bytes = max(st.max_backlog_bytes, int(backlog))
        self.busy_until = max(self.busy_until, now) + wire_bytes * 8 / p.rate_bps
        return self.busy_until + p.delay_s


def wire_bytes(packet: bytes | memoryview, vnet_hdr: bool) -> int:
    """Bytes a packet puts on the wire: a GSO super-packet counts the headers of every segment.

    `packet` is what a TUN device returns: with `vnet_hdr`, a virtio_net_hdr then the IP packet.
    """
    if not vnet_hdr:
        return len(packet)
    size = len(packet) - VNET_HDR_LEN
    gso_type, gso_size = packet[1], packet[4] | packet[5] << 8
    if gso_type == VNET_GSO_NONE or not gso_size:
        return size
    ip = VNET_HDR_LEN
    ip_header = (packet[ip] & 0x0F) * 4 if packet[ip] >> 4 == 4 else IPV6_HEADER_LEN
    tcp_header = (packet[ip + ip_header + 12] >> 4) * 4
    headers = ip_header + tcp_header
    segments = math.ceil((size - headers) / gso_size)
    return size + (segments - 1) * headers


# ---------------------------------------------------------------------------------------------
# Devices


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_tun(netns_path: str, ifname: str, vnet_hdr: bool) -> int:
    """Create TUN device `ifname` inside the namespace at `netns_path`; return a non-blocking fd.

    The device belongs to the namespace that was current when it was created, so this thread
    enters the target namespace for the ioctl and always returns home.
    """
    if len(ifname.encode()) >= IFNAMSIZ:
        raise DelayLineError(f"interface name {ifname!r} is longer than {IFNAMSIZ - 1} bytes")
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise DelayLineError(f"cannot open namespace {netns_path}: {e.strerror}") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), flags))
            if vnet_hdr:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as e:
            raise DelayLineError(f"cannot create TUN {ifname!r} in {netns_path}: {e}") from None
    finally:
        _setns(home)
        os.close(home)
        os.close(target)
    return fd


# ---------------------------------------------------------------------------------------------
# One direction: a scheduler between two file descriptors


class Direction:
    """Reads packets from one device, schedules them, writes them to the other when due."""

    def __init__(self, rfd: int, wfd: int, scheduler: Scheduler, vnet_hdr: bool):
        self.rfd, self.wfd, self.scheduler, self.vnet_hdr = rfd, wfd, scheduler, vnet_hdr
        self.line: deque[tuple[float, bytes]] = deque()

    def ingest(self, now: float) -> None:
        """Read up to READ_BUDGET waiting packets and put the admitted ones on the line."""
        admit, line, vnet = self.scheduler.admit, self.line, self.vnet_hdr
        for _ in range(READ_BUDGET):
            try:
                packet = os.read(self.rfd, READ_BYTES)
            except BlockingIOError:
                return
            due = admit(now, wire_bytes(packet, vnet))
            if due is not None:
                line.append((due, packet))

    def deliver(self, now: float) -> float | None:
        """Write every packet due by `now`; return when the next one is due (None: line empty)."""
        line, st = self.line, self.scheduler.stats
        header = VNET_HDR_LEN if self.vnet_hdr else 0
        while line and line[0][0] <= now:
            packet = line.popleft()[1]
            try:
                os.write(self.wfd, packet)
            except OSError:
                st.write_errors += 1  # the far device is down or its queue is full: a loss
                continue
            st.tx += 1
            st.tx_bytes += len(packet) - header
        return line[0][0] if line else None


# ---------------------------------------------------------------------------------------------
# The process


class DelayLine:
    """Two TUN devices and the two directions between them, run by one epoll loop."""

    def __init__(self, ns_a: str, if_a: str, ns_b: str, if_b: str, ab: DirectionParams,
                 ba: DirectionParams, seed: int | None = None, commands_fd: int | None = None):
        self.commands_fd = commands_fd
        """Where reshape commands arrive (`CommandReader`), if anywhere."""
        self.vnet_hdr = ab.loss == 0 and ba.loss == 0
        self.fd_a = open_tun(ns_a, if_a, self.vnet_hdr)
        try:
            self.fd_b = open_tun(ns_b, if_b, self.vnet_hdr)
        except DelayLineError:
            os.close(self.fd_a)
            raise
        rng = random.Random(seed)
        self.ab = Direction(self.fd_a, self.fd_b, Scheduler(ab, rng.random), self.vnet_hdr)
        self.ba = Direction(self.fd_b, self.fd_a, Scheduler(ba, rng.random), self.vnet_hdr)

    def run(self, ready: Callable[[], None] = lambda: None) -> None:
        """Forward packets until SIGTERM or SIGINT arrives."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        stop = False

        def on_signal(_signo: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        by_fd = {self.fd_a: self.ab, self.fd_b: self.ba}
        ep = select.epoll()
        for fd in (*by_fd, wake_r):
            ep.register(fd, select.EPOLLIN)
        commands = (CommandReader(self.commands_fd, self.reshape, self.report)
                    if self.commands_fd is not None else None)
        if commands:
            ep.register(commands.fd, select.EPOLLIN)
        ready()
        clock, timeout = time.monotonic, None
        try:
            while not stop:
                events = ep.poll(timeout)
                now = clock()
                for fd, _ in events:
                    if fd in by_fd:
                        by_fd[fd].ingest(now)
                    elif commands and fd == commands.fd and not commands.read():
                        ep.unregister(commands.fd)  # the orchestrator closed its end
                        commands = None
                release = clock() + EARLY_RELEASE_S
                due = [t for t in (self.ab.deliver(release), self.ba.deliver(release))
                       if t is not None]
                timeout = max(0.0, min(due) - EARLY_RELEASE_S - clock()) if due else None
        finally:
            signal.set_wakeup_fd(-1)
            for s, handler in previous.items():
                signal.signal(s, handler)
            ep.close()
            os.close(wake_r)
            os.close(wake_w)

    def reshape(self, ab: DirectionParams, ba: DirectionParams) -> None:
        """New parameters for each direction from now on; packets already on the line keep the
        delivery time they were given (they are in flight)."""
        self.ab.scheduler.params, self.ba.scheduler.params = ab, ba

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {"gso": self.vnet_hdr}
        for name, d in (("a2b", self.ab), ("b2a", self.ba)):
            out[name] = {**asdict(d.scheduler.stats), "in_flight": len(d.line),
                         "queue_limit_bytes": d.scheduler.params.queue_limit_bytes}
        return out

    def report(self) -> None:
        """The counters so far, one JSON line on stdout (the last line, at exit, is the same)."""
        print(json.dumps(self.stats()), flush=True)

    def close(self) -> None:
        os.close(self.fd_a)
        os.close(self.fd_b)


class CommandReader:
    """Commands, one JSON object a line, as the orchestrator sends them on our stdin: a reshape
    (`stemflow.emu.links.UserspaceLink.reshape`), `{"a2b": {...}, "b2a": {...}}`, each direction
    with `rate_mbps`, `delay_ms`, `loss`, `queue_bytes` and `down`; or `{"stats": true}`
    (`UserspaceLink.counters`), answered by `report` (the counters so far, one JSON line on
    stdout), so that a run can count what crossed the link between two instants. A malformed
    line is reported on stderr and changes nothing."""

    def __init__(self, fd: int, apply: Callable[[DirectionParams, DirectionParams], None],
                 report: Callable[[], None] = lambda: None):
        self.fd, self.apply, self.report = fd, apply, report
        os.set_blocking(fd, False)
        self._partial = b""

    def read(self) -> bool:
        """Apply every complete line waiting; False once the other end has closed."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                cmd = json.loads(line)
                if cmd.get("stats"):
                    self.report()
                    continue
                self.apply(_params(cmd["a2b"]), _params(cmd["b2a"]))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                print(f"delayline: ignoring command {line[:200]!r}: {e}", file=sys.stderr, flush=True)
        return True


def _params(d: dict) -> DirectionParams:
    return DirectionParams(rate_bps=float(d["rate_mbps"]) * 1e6, delay_s=float(d["delay_ms"]) / 1e3,
                           loss=float(d.get("loss", 0.0)), queue_bytes=int(d.get("queue_bytes", 0)),
                           down=bool(d.get("down", False)))


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the process that started us dies (a crashed run)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stemflow.emu.delayline",
                                 description="User-space WAN link between two namespaces.")
    ap.add_argument("--ns-a", required=True, help="namespace of end a, e.g. /proc/PID/ns/net")
    ap.add_argument("--if-a", required=True, help="TUN device name in namespace a")
    ap.add_argument("--ns-b", required=True)
    ap.add_argument("--if-b", required=True)
    ap.add_argument("--rate-mbps", type=float, default=0.0, help="a->b rate; 0 = unlimited")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="a->b one-way delay")
    ap.add_argument("--loss", type=float, default=0.0, help="a->b loss probability")
    ap.add_argument("--queue-bytes", type=int, default=0, help="a->b limit; 0 = one BDP")
    for name in ("rate-mbps", "delay-ms", "loss", "queue-bytes"):
        ap.add_argument(f"--{name}-ba", type=float, default=None, help=f"b->a {name} (default: a->b)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--commands", action="store_true",
                    help="read reshape commands (JSON lines) on stdin while running")
    return ap.parse_args(argv)


def direction_params(a: argparse.Namespace, suffix: str) -> DirectionParams:
    def pick(name: str) -> float:
        v = getattr(a, name + suffix, None)
        return getattr(a, name) if v is None else v

    return DirectionParams(rate_bps=pick("rate_mbps") * 1e6, delay_s=pick("delay_ms") / 1e3,
                           loss=pick("loss"), queue_bytes=int(pick("queue_bytes")))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        ab, ba = direction_params(a, ""), direction_params(a, "_ba")
        line = DelayLine(a.ns_a, a.if_a, a.ns_b, a.if_b, ab, ba, a.seed,
                         sys.stdin.fileno() if a.commands else None)
    except (ValueError, DelayLineError) as e:
        print(f"delayline: {e}", file=sys.stderr)
        return 2
    _die_with_parent()
    try:
        line.run(ready=lambda: print("READY", flush=True))
    finally:
        print(json.dumps(line.stats()), flush=True)
        line.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
