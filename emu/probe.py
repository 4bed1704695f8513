"""Measurement endpoints run inside emulated hosts: a bulk TCP transfer and a UDP loss counter.

Owns the two small programs the emulator uses to measure a path directly, without relays: the
direct-TCP baseline of a scenario, and the link-accuracy tests. Each side prints one JSON line
with what it measured; timestamps are CLOCK_MONOTONIC, which every namespace of a machine shares,
so the orchestrator can join a sender's start to a receiver's end. Starting them inside hosts and
reading their output is the orchestrator's job (`stemflow.emu.topology.Emulation.popen`).

    python -m stemflow.emu.probe tcp-recv --listen ADDR:PORT [--cc cubic]
    python -m stemflow.emu.probe tcp-send --to ADDR:PORT (--bytes N | --seconds T) [--cc cubic]
    python -m stemflow.emu.probe tcp-sink --listen ADDR:PORT --count N   (route primers)
    python -m stemflow.emu.probe tcp-touch ADDR:PORT [ADDR:PORT ...]
    python -m stemflow.emu.probe udp-recv --listen ADDR:PORT --seconds T
    python -m stemflow.emu.probe udp-send --to ADDR:PORT --count N --rate-pps R

The receivers print READY once they listen. Window caps are not the endpoints' business: the
topology clamps every route (see `stemflow.emu.topology`).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

CHUNK_BYTES = 1 << 20
"""Send and receive in 1 MiB calls: few system calls per second even at 10 Gbit/s."""
UDP_PAYLOAD_BYTES = 64
UDP_RCVBUF_BYTES = 32 * 2**20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may exceed net.core.rmem_max
ACCEPT_TIMEOUT_S = 60.0


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _tcp_socket(cc: str | None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if cc:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    return s


def tcp_recv(listen: str, cc: str | None) -> dict[str, object]:
    """Accept one connection and read it to EOF."""
    srv = _tcp_socket(cc)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(_addr(listen))
    srv.listen(1)
    srv.settimeout(ACCEPT_TIMEOUT_S)
    print("READY", flush=True)
    conn, _ = srv.accept()
    srv.close()
    buf = bytearray(CHUNK_BYTES)
    total, first = 0, None
    while n := conn.recv_into(buf):
        if first is None:
            first = time.monotonic()
        total += n
    last = time.monotonic()
    conn.close()
    return {"bytes": total, "first_byte_t": first, "last_byte_t": last, "cc": cc}


def tcp_send(to: str, cc: str | None, size_bytes: int, seconds: float) -> dict[str, object]:
    """Connect and send `size_bytes` (or for `seconds`); report when the first call started."""
    s = _tcp_socket(cc)
    start = time.monotonic()
    s.connect(_addr(to))
    data = bytes(CHUNK_BYTES)
    sent, view = 0, memoryview(data)
    end = start + seconds if seconds else None
    while (size_bytes and sent < size_bytes) or (end and time.monotonic() < end):
        n = min(CHUNK_BYTES, size_bytes - sent) if size_bytes else CHUNK_BYTES
        s.sendall(view[:n])
        sent += n
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # wait for the receiver's close: every byte has arrived
    s.close()
    return {"bytes": sent, "start_t": start, "end_t": time.monotonic(), "cc": cc}


def tcp_sink(listen: str, count: int) -> dict[str, object]:
    """Accept `count` connections and close each at once (route primer)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(_addr(listen))
    srv.listen(count)
    srv.settimeout(ACCEPT_TIMEOUT_S)
    print("READY", flush=True)
    for _ in range(count):
        conn, _ = srv.accept()
        conn.recv(1)  # the peer's close
        conn.close()
    srv.close()
    return {"accepted": count}


def tcp_touch(targets: list[str]) -> dict[str, object]:
    """Open and close one connection to each target (route primer)."""
    for t in targets:
        with socket.create_connection(_addr(t), timeout=ACCEPT_TIMEOUT_S) as s:
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
    return {"touched": len(targets)}


def udp_recv(listen: str, seconds: float) -> dict[str, object]:
    """Count distinct sequence numbers received until `seconds` pass without a datagram."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # a receiver descheduled on a busy machine must not lose datagrams in its socket buffer
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RCVBUF_BYTES)
    s.bind(_addr(listen))
    s.settimeout(seconds)
    print("READY", flush=True)
    seen: set[int] = set()
    try:
        while True:
            data = s.recv(2048)
            seen.add(int.from_bytes(data[:8], "big"))
    except TimeoutError:
        pass
    return {"received": len(seen), "highest": max(seen, default=-1)}


def udp_send(to: str, count: int, rate_pps: float) -> dict[str, object]:
    """Send `count` numbered datagrams, paced at `rate_pps`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(_addr(to))
    pad = bytes(UDP_PAYLOAD_BYTES - 8)
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate_pps
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        s.send(i.to_bytes(8, "big") + pad)
    return {"sent": count, "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stemflow.emu.probe")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tcp-recv")
    p.add_argument("--listen", required=True)
    p.add_argument("--cc")
    p = sub.add_parser("tcp-send")
    p.add_argument("--to", required=True)
    p.add_argument("--cc")
    p.add_argument("--bytes", type=int, default=0)
    p.add_argument("--seconds", type=float, default=0.0)
    p = sub.add_parser("tcp-sink")
    p.add_argument("--listen", required=True)
    p.add_argument("--count", type=int, required=True)
    p = sub.add_parser("tcp-touch")
    p.add_argument("targets", nargs="+", metavar="ADDR:PORT")
    p = sub.add_parser("udp-recv")
    p.add_argument("--listen", required=True)
    p.add_argument("--seconds", type=float, default=2.0, help="idle time that ends the count")
    p = sub.add_parser("udp-send")
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate-pps", type=float, default=10_000.0)
    a = ap.parse_args(argv)
    if a.cmd == "tcp-send" and bool(a.bytes) == bool(a.seconds):
        ap.error("tcp-send: give exactly one of --bytes or --seconds")
    if a.cmd == "tcp-recv":
        out = tcp_recv(a.listen, a.cc)
    elif a.cmd == "tcp-send":
        out = tcp_send(a.to, a.cc, a.bytes, a.seconds)
    elif a.cmd == "tcp-sink":
        out = tcp_sink(a.listen, a.count)
    elif a.cmd == "tcp-touch":
        out = tcp_touch(a.targets)
    elif a.cmd == "udp-recv":
        out = udp_recv(a.listen, a.seconds)
    else:
        out = udp_send(a.to, a.count, a.rate_pps)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
