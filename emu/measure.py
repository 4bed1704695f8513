"""Path measurements between emulated hosts: RTT by ping, TCP goodput, UDP loss.

Owns running a measurement end to end inside an `Emulation`: start the receiver in one host,
wait for it, run the sender in another, collect both JSON reports and turn them into one result.
Every packet is sent from inside an emulated host to another one; nothing here opens a socket in
the root namespace. The endpoints themselves are `stemflow.emu.probe`.
"""

from __future__ import annotations

import json
import math
import re
import selectors
import statistics
import subprocess
import sys
from dataclasses import dataclass

from stemflow.emu.topology import Emulation

PROBE = [sys.executable, "-m", "stemflow.emu.probe"]
READY_TIMEOUT_S = 10.0
PROBE_PORT = 5201
UDP_PORT = 5202
_PING_SUMMARY = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_PING_TIME = re.compile(r"time=([\d.]+) ms")
_PING_LOSS = re.compile(r"(\d+) packets transmitted, (\d+) received")


class MeasureError(RuntimeError):
    pass


def await_line(proc: subprocess.Popen, expected: str, timeout: float, what: str) -> None:
    """Wait until `proc` prints the line `expected`; raise with its stderr if it does not."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        line = ""
        if sel.select(timeout=timeout):
            line = proc.stdout.readline().strip()
    finally:
        sel.close()
    if line != expected:
        proc.kill()
        _, err = proc.communicate()
        raise MeasureError(f"{what} did not print {expected}: {line!r} {err.strip()}")


def _report(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MeasureError(f"{what}: no report within {timeout} s") from None
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise MeasureError(f"{what} failed ({proc.returncode}): {err.strip()}")
    return json.loads(lines[-1])


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    min_ms: float
    avg_ms: float
    max_ms: float
    median_ms: float  # robust to a sample delayed by a busy machine's scheduler


def ping(emu: Emulation, src: str, dst: str, count: int = 20, interval_s: float = 0.05,
         size_bytes: int = 56) -> PingResult:
    """ICMP echo from host `src` to `dst`'s own address."""
    out = emu.run(src, ["ping", "-n", "-c", str(count), "-i", repr(interval_s),
                        "-s", str(size_bytes), emu.address(dst)],
                  timeout=count * interval_s + 10)
    m, n = _PING_SUMMARY.search(out), _PING_LOSS.search(out)
    if not m or not n:
        raise MeasureError(f"cannot read ping output: {out!r}")
    samples = [float(x) for x in _PING_TIME.findall(out)]
    return PingResult(int(n.group(1)), int(n.group(2)), float(m.group(1)), float(m.group(2)),
                      float(m.group(3)), statistics.median(samples) if samples else math.nan)


@dataclass(frozen=True)
class Transfer:
    """A TCP transfer: bytes delivered, from the sender's connect() to the last byte's arrival."""

    size_bytes: int
    completion_s: float
    steady_s: float  # first byte to last byte at the receiver

    @property
    def throughput_mbps(self) -> float:
        return self.size_bytes * 8 / self.completion_s / 1e6

    @property
    def goodput_mbps(self) -> float:
        return self.size_bytes * 8 / self.steady_s / 1e6


def tcp_transfer(emu: Emulation, src: str, dst: str, *, size_bytes: int = 0,
                 seconds: float = 0.0, cc: str | None = None, port: int = PROBE_PORT,
                 timeout: float = 600.0) -> Transfer:
    """One TCP connection from `src` to `dst` carrying `size_bytes` (or running for `seconds`)."""
    listen = f"{emu.address(dst)}:{port}"
    recv_argv = [*PROBE, "tcp-recv", "--listen", listen]
    send_argv = [*PROBE, "tcp-send", "--to", listen]
    if cc:
        recv_argv += ["--cc", cc]
        send_argv += ["--cc", cc]
    send_argv += ["--bytes", str(size_bytes)] if size_bytes else ["--seconds", repr(seconds)]
    receiver = emu.popen(dst, recv_argv, what=f"tcp receiver in {dst}")
    await_line(receiver, "READY", READY_TIMEOUT_S, f"tcp receiver in {dst}")
    sender = emu.popen(src, send_argv, what=f"tcp sender in {src}")
    sent = _report(sender, timeout, f"tcp sender in {src}")
    got = _report(receiver, READY_TIMEOUT_S, f"tcp receiver in {dst}")
    if got["bytes"] != sent["bytes"]:
        raise MeasureError(f"sent {sent['bytes']} bytes but {got['bytes']} arrived")
    return Transfer(got["bytes"], got["last_byte_t"] - sent["start_t"],
                    got["last_byte_t"] - got["first_byte_t"])


@dataclass(frozen=True)
class LossResult:
    sent: int
    received: int

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent


def udp_loss(emu: Emulation, src: str, dst: str, count: int = 20_000,
             rate_pps: float = 20_000.0, port: int = UDP_PORT) -> LossResult:
    """One-way loss from `src` to `dst`: numbered datagrams sent, distinct ones received."""
    listen = f"{emu.address(dst)}:{port}"
    receiver = emu.popen(dst, [*PROBE, "udp-recv", "--listen", listen, "--seconds", "1.0"],
                         what=f"udp receiver in {dst}")
    await_line(receiver, "READY", READY_TIMEOUT_S, f"udp receiver in {dst}")
    sender = emu.popen(src, [*PROBE, "udp-send", "--to", listen, "--count", str(count),
                             "--rate-pps", repr(rate_pps)], what=f"udp sender in {src}")
    sent = _report(sender, count / rate_pps + 30, f"udp sender in {src}")
    got = _report(receiver, 30, f"udp receiver in {dst}")
    return LossResult(sent["sent"], got["received"])
