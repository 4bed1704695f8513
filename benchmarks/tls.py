"""What security costs the data plane, on loopback: plaintext, TLS, and TLS with tokens, in one run.

Publisher -> relay A -> relay B -> subscriber, P=4 connections between the relays, as in
`dataplane.py` (whose harness and publisher/subscriber loops this reuses), in three setups:

- plaintext: the default, no credentials;
- tls: every relay and the controller with a certificate of a fresh CA (`--certs`): mutual TLS
  between the relays and to the controller, TLS on both client connections;
- tls+tokens: as tls, and the relays check client tokens (`--auth-key`), the publisher's and
  subscriber's tokens allowing a few patterns each (the topic matched by the last).

Rows: goodput with 64 KiB messages and message rate with 1 KiB messages (publisher flat out).
The setups alternate within each repetition (order rotated), and each ratio (tls / plaintext,
tls+tokens / tls) is taken within one repetition, then the median and range over repetitions
are quoted: the machine is shared and noisy. Writes the "## Security" section of
docs/benchmarks.md with --write.

Usage: python benchmarks/tls.py [--reps 3] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dataplane import GOODPUT_BYTES, PY, RATE_BYTES, Procs, _pub_loop, _sub_loop, read_line
from docpage import write_section

from stemflow import eventloop
from stemflow.security import certs, tokens

SETUPS = ("plaintext", "tls", "tls+tokens")
TOPIC = "bench.dataplane"
PATTERNS = ("chat.*", "video.>", "sensors.*.temperature", "bench.>")
"""A token's patterns: three that do not cover the topic before the one that does."""
PROCESSES = ("pub", "relay-a", "relay-b", "sub")
TARGETS = {"goodput": 0.5, "rate": 0.5, "tokens_rate": 0.95}
"""The issue's targets: TLS keeps >= 50% of plaintext goodput and message rate; token checks
cost <= 5% of the message rate."""


async def worker(role: str, size: int, addr: str, status: str, ca: str, token: str) -> dict:
    from stemflow.client import connect
    from stemflow.security.tls import client_context

    c = await connect(addr, token=token or None, tls=client_context(ca) if ca else None)
    if role == "sub":
        sub = await c.subscribe(TOPIC)
        print("ready", flush=True)

        async def nxt() -> bytes:
            return (await sub.__anext__()).data
        cpu0 = time.process_time()
        out = await _sub_loop(nxt, "rate", 0)
        return {**out, "cpu_s": time.process_time() - cpu0}
    stream = c.open_stream(TOPIC)
    await stream.drain()
    while True:  # until the controller has planned the session (else frames wait at the ingress)
        with urllib.request.urlopen(status, timeout=5) as r:
            if any(s["topic"] == TOPIC and s["rate_mbps"] for s in json.load(r)["sessions"]):
                break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)

    async def send(d: bytes) -> None:
        stream.send(d)
    cpu0 = time.process_time()
    out = await _pub_loop(send, stream.drain, "rate", size)
    await c.close()
    return {**out, "cpu_s": time.process_time() - cpu0}


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def credentials(tmp: Path) -> tuple[Path, str]:
    """A fresh CA with relays a, b and the controller; a signing key and one client token."""
    ca = tmp / "ca"
    certs.init_ca(ca)
    for dc in ("a", "b"):
        certs.issue(ca, dc)
    certs.issue(ca, certs.CONTROLLER_NAME, "controller")
    signing, _ = tokens.init_keys(tmp / "keys")
    token = tokens.issue_token(tokens.load_signing_key(signing), "bench", PATTERNS, PATTERNS, 3600,
                               time.time())
    return ca, token


def run_setup(procs: Procs, tmp: Path, setup: str, ca: Path, token: str) -> dict:
    scenario = tmp / "bench.yaml"
    scenario.write_text("name: tls\ndatacenters: [{name: a}, {name: b}]\nlinks:\n"
                        "  - {a: a, b: b, rtt_ms: 1, bandwidth_mbps: 100000}\n"
                        "clients: []\nsessions: []\n")
    tls = ["--certs", str(ca)] if setup != "plaintext" else []
    auth = ["--auth-key", str(tmp / "keys" / tokens.VERIFY_KEY_FILE)] if setup == "tls+tokens" else []
    ctl = procs.start("controller", [PY, "-m", "stemflow.cli", "controller", "--listen", "127.0.0.1:0",
                                     "--status", "127.0.0.1:0", "--strategy", "shortest",
                                     "--scenario", str(scenario), "--log-level", "WARNING", *tls])
    port = read_line(ctl, "controller listening").rsplit(":", 1)[1]
    status = read_line(ctl, "controller status").split()[-1]
    addr, relays = {}, {}
    for dc in ("a", "b"):
        p = procs.start(f"relay-{dc}", [PY, "-m", "stemflow.cli", "relay", "--dc", dc, "--listen",
                                        "127.0.0.1:0", "--controller", f"127.0.0.1:{port}",
                                        "--parallel", "4", "--log-level", "WARNING", *tls, *auth])
        addr[dc] = read_line(p, f"relay {dc} listening").split()[-1]
        relays[f"relay-{dc}"] = p.pid
    time.sleep(1.5)  # registered, peers connected
    ca_arg = str(ca / certs.CA_CERT_FILE) if tls else ""
    tok = token if auth else ""

    def pair(size: int) -> tuple[dict, dict[str, float]]:
        """The subscriber's counts, and the CPU seconds each process spent meanwhile."""
        def start(role: str, where: str):
            return procs.start(f"{setup}-{role}", [PY, str(Path(__file__).resolve()), "--worker", role,
                                                   str(size), where, status, ca_arg, tok])
        sub = start("sub", addr["b"])
        read_line(sub, "ready")
        before = {name: cpu_s(pid) for name, pid in relays.items()}
        pub = start("pub", addr["a"])
        pub_out, _ = pub.communicate(timeout=120)
        out, _ = sub.communicate(timeout=120)
        cpu = {name: cpu_s(pid) - before[name] for name, pid in relays.items()}
        cpu["pub"] = json.loads(pub_out.decode().strip().splitlines()[-1])["cpu_s"]
        s = json.loads(out.decode().strip().splitlines()[-1])
        cpu["sub"] = s["cpu_s"]
        return s, cpu

    s, cpu = pair(GOODPUT_BYTES)
    goodput = s["bytes"] * 8 / max(1, s["last_ns"] - s["first_ns"])
    cpu_byte = {k: v * 1e9 / max(1, s["bytes"]) for k, v in cpu.items()}
    s, cpu = pair(RATE_BYTES)
    rate = s["count"] / max(1e-9, (s["last_ns"] - s["first_ns"]) / 1e9)
    cpu_msg = {k: v * 1e6 / max(1, s["count"]) for k, v in cpu.items()}
    return {"goodput_gbps": goodput, "rate_msgs": rate, "cpu_ns_per_byte": cpu_byte,
            "cpu_us_per_msg": cpu_msg}


CORE_FRAMES = 64
"""1 KiB DATA frames per read handed to the relay core: what one 64 KiB socket read holds."""
CORE_READS = 2000
CORE_PAIRS = 7


def core_rate(with_tokens: bool) -> float:
    """1 KiB DATA frames per second through one relay core (`RelayCore.receive`), publisher and
    subscriber at this relay: the relay's own CPU cost per message, without sockets or clients,
    with and without token checking (so the permission check's share of it is not lost in the
    noise of six processes on two shared cores)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from stemflow.protocol import FrameType, ReceiveBuffer, advertise_payload, data_header, encode, session_id
    from stemflow.relay.core import RelayCore
    from stemflow.routing.plan import RelayTable
    from stemflow.security.permissions import Authenticator

    key = Ed25519PrivateKey.generate()
    core = RelayCore("a", auth=Authenticator(key.public_key()) if with_tokens else None)
    token = tokens.issue_token(key, "bench", PATTERNS, PATTERNS, 3600, time.time())
    sid = session_id(TOPIC)

    def feed(conn, data: bytes) -> list:
        rb = ReceiveBuffer()
        rb.get_buffer()[:len(data)] = data
        rb.updated(len(data))
        return core.receive(conn, rb, 0.0)

    hello = encode(FrameType.HELLO, json.dumps({"role": "client", "token": token}).encode())
    pub, sub = core.connection(), core.connection()
    feed(sub, hello + encode(FrameType.SUBSCRIBE, TOPIC.encode(), session=sid))
    feed(pub, hello + encode(FrameType.ADVERTISE, advertise_payload(TOPIC), session=sid))
    core.install(RelayTable("a", 1, {}, {TOPIC: ()}), {}, 0.0)  # nobody elsewhere: deliver here
    assert sub.subscribed and pub.advertised, "the setup was refused"
    payload = b"x" * RATE_BYTES
    spent = 0.0
    for r in range(CORE_READS):
        data = b"".join(data_header(sid, r * CORE_FRAMES + i, 0, 7, RATE_BYTES) + payload
                        for i in range(CORE_FRAMES))
        t0 = time.perf_counter()
        feed(pub, data)
        spent += time.perf_counter() - t0
    assert core.counters["late_frames"] == 0
    return CORE_READS * CORE_FRAMES / spent


FLOOR_BYTES = 512 << 20
"""Bytes moved per floor measurement: a few hundred ms of CPU, enough to swamp start-up."""
FLOOR_CHUNK = 256 << 10
"""Bytes per write and per read: asyncio's TLS read size (`SSLProtocol.max_size`)."""
FLOOR_REPS = 3


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen()
        c = socket.create_connection(ls.getsockname())
        s, _ = ls.accept()
    return c, s


def floor_ns_per_byte(ca: Path, how: str) -> float:
    """CPU ns per byte to send and receive FLOOR_BYTES over one loopback TCP connection in one
    process, 256 KiB at a time: `plain` sockets; `bio`, TLS as asyncio does it (ssl.SSLObject
    over memory BIOs, the ciphertext copied between them and the socket); `socket`, TLS with
    OpenSSL on the socket itself (ssl.SSLSocket). One encryption and one decryption per byte:
    what one TLS hop costs at least, whoever drives it."""
    import ssl
    import threading

    from stemflow.security.tls import client_context, member_server_context

    server_ctx = member_server_context(ca, "a", require_cert=False)
    client_ctx = client_context(ca / certs.CA_CERT_FILE)
    c, s = _socket_pair()
    data = memoryview(os.urandom(FLOOR_CHUNK))
    buf = memoryview(bytearray(FLOOR_CHUNK))
    want = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)
    if how == "socket":
        box: dict[str, ssl.SSLSocket] = {}
        t = threading.Thread(target=lambda: box.setdefault("s", server_ctx.wrap_socket(s, server_side=True)))
        t.start()
        c = client_ctx.wrap_socket(c, server_hostname="a")
        t.join()
        s = box["s"]
    elif how == "bio":
        ci, co, si, so = (ssl.MemoryBIO() for _ in range(4))
        cobj = client_ctx.wrap_bio(ci, co, server_hostname="a")
        sobj = server_ctx.wrap_bio(si, so, server_side=True)
        for _ in range(10):  # the handshake, in memory
            for end in (cobj, sobj):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
            si.write(co.read())
            ci.write(so.read())
    c.setblocking(False)
    s.setblocking(False)
    got, pending = 0, b""
    t0 = time.process_time()
    while got < FLOOR_BYTES:
        try:
            if how == "bio":
                if not pending:
                    cobj.write(data)
                    pending = co.read()
                pending = pending[c.send(pending):]
            else:
                c.send(data)
        except want:
            pass
        try:
            while True:
                n = s.recv_into(buf)
                if how == "bio":
                    si.write(buf[:n])
                    try:
                        while m := sobj.read(FLOOR_CHUNK, buf):
                            got += m
                    except ssl.SSLWantReadError:
                        pass
                else:
                    got += n
        except want:
            pass
    spent = time.process_time() - t0
    c.close()
    s.close()
    return spent * 1e9 / got


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def render(reps: list[dict[str, dict]], core: list[tuple[float, float]],
           floor: dict[str, list[float]], load: str) -> str:
    def col(setup: str, row: str) -> list[float]:
        return [r[setup][row] for r in reps]

    def ratio(a: str, b: str, row: str) -> list[float]:
        return [r[a][row] / r[b][row] for r in reps]

    g_tls, r_tls = ratio("tls", "plaintext", "goodput_gbps"), ratio("tls", "plaintext", "rate_msgs")
    r_tok = ratio("tls+tokens", "tls", "rate_msgs")
    g_tok = ratio("tls+tokens", "tls", "goodput_gbps")
    lines = [
        "## Security", "",
        f"`benchmarks/tls.py`, {datetime.date.today().isoformat()}, {platform.node()}: "
        f"{os.cpu_count()} cores, shared (load {load}), Python {platform.python_version()}, "
        f"{len(reps)} repetitions with the setups alternating. Publisher -> relay A -> relay B -> "
        "subscriber on loopback, P=4 between the relays; medians, range in brackets.", "",
        "| setup | goodput, 64 KiB (Gbit/s) | message rate, 1 KiB (msg/s) |", "|---|---|---|"]
    for setup in SETUPS:
        lines.append(f"| {setup} | {spread(col(setup, 'goodput_gbps'), '.2f')} | "
                     f"{spread(col(setup, 'rate_msgs'), ',.0f')} |")
    lines += ["", "Ratios, each within one repetition:", "",
              "| ratio | goodput, 64 KiB | message rate, 1 KiB | target |", "|---|---|---|---|",
              f"| tls / plaintext | {spread(g_tls, '.2f')} | {spread(r_tls, '.2f')} | ≥ 0.50 both |",
              f"| tls+tokens / tls | {spread(g_tok, '.2f')} | {spread(r_tok, '.2f')} | ≥ 0.95 rate |",
              "",
              f"One relay core alone (`RelayCore.receive`, {CORE_FRAMES} frames of 1 KiB per read, "
              f"publisher and subscriber at the relay, {len(core)} alternating pairs of "
              f"{CORE_READS * CORE_FRAMES:,} frames): without tokens "
              f"{spread([a for a, _ in core], ',.0f')} frames/s, with tokens "
              f"{spread([b for _, b in core], ',.0f')}; with / without "
              f"{spread([b / a for a, b in core], '.3f')}.",
              "",
              "CPU per payload byte with 64 KiB messages (ns/B) and per 1 KiB message (µs), each "
              "process's user + system time while the pair ran (/proc for the relays, the "
              "worker's own clock for the clients). Less sensitive to the machine's other load "
              "than the rates, not immune to it: a relay preempted more often reads and writes "
              "less per call, and TLS's per-call costs grow with that.", "",
              "| setup | " + " | ".join(f"{p}, ns/B" for p in PROCESSES) + " | total, ns/B | "
              "total, µs/msg |", "|---|" + "---|" * (len(PROCESSES) + 2)]
    for setup in SETUPS:
        lines.append(f"| {setup} | " + " | ".join(
            spread([r[setup]["cpu_ns_per_byte"][p] for r in reps], ".2f") for p in PROCESSES)
            + f" | {spread([sum(r[setup]['cpu_ns_per_byte'].values()) for r in reps], '.2f')} | "
            f"{spread([sum(r[setup]['cpu_us_per_msg'].values()) for r in reps], '.2f')} |")
    cpu_ratio = [sum(r["plaintext"]["cpu_ns_per_byte"].values()) / sum(r["tls"]["cpu_ns_per_byte"].values())
                 for r in reps]
    lines += ["", "Plaintext / TLS CPU per byte, the goodput ratio a CPU-bound run would show: "
              f"{spread(cpu_ratio, '.2f')}.", "",
              f"One TLS hop's floor (`floor_ns_per_byte`: one process sends and receives "
              f"{FLOOR_BYTES >> 20} MiB over one loopback connection, {FLOOR_CHUNK >> 10} KiB per "
              f"call; {FLOOR_REPS} repetitions, CPU ns per byte): plain sockets "
              f"{spread(floor['plain'], '.2f')}; TLS through memory BIOs as asyncio does it "
              f"{spread(floor['bio'], '.2f')}; TLS on the socket (ssl.SSLSocket) "
              f"{spread(floor['socket'], '.2f')}.",
              "",
              "TLS covers both client connections, the four relay-to-relay connections and the "
              "control connections (mutual TLS). Tokens are checked when a client names a topic "
              "(HELLO, ADVERTISE, SUBSCRIBE), never per message: DATA frames need an ADVERTISE "
              "first, so the data path is the same code with and without tokens."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        role, size, addr, status, ca, token = argv[1:7]
        print(json.dumps(eventloop.run(worker(role, int(size), addr, status, ca, token), "uvloop")),
              flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    p.add_argument("--setups", default=",".join(SETUPS),
                   help="comma-separated subset to run (then only the per-repetition lines print)")
    args = p.parse_args(argv)
    setups = tuple(args.setups.split(","))
    if not set(setups) <= set(SETUPS):
        p.error(f"--setups: expected some of {', '.join(SETUPS)}")
    load_before = os.getloadavg()[0]
    reps: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as t:
        tmp = Path(t)
        ca, token = credentials(tmp)
        procs = Procs(tmp)
        try:
            for i in range(args.reps):
                rep = {}
                k = i % len(setups)
                order = setups[k:] + setups[:k]
                for setup in order:
                    rep[setup] = run_setup(procs, tmp, setup, ca, token)
                    print(f"rep {i + 1} {setup}: " + json.dumps(rep[setup]), flush=True)
                    procs.close()
                    procs.procs.clear()
                reps.append(rep)
        finally:
            procs.close()
    if setups != SETUPS:
        return 0
    core = []
    for i in range(CORE_PAIRS):
        if i % 2 == 0:
            a, b = core_rate(False), core_rate(True)
        else:
            b, a = core_rate(True), core_rate(False)
        core.append((a, b))
        print(f"core pair {i + 1}: without {a:,.0f}, with tokens {b:,.0f} frames/s", flush=True)
    floor: dict[str, list[float]] = {"plain": [], "bio": [], "socket": []}
    with tempfile.TemporaryDirectory(prefix="tls-floor-") as t:
        ca, _ = credentials(Path(t))
        for i in range(FLOOR_REPS):
            for how in floor:
                floor[how].append(floor_ns_per_byte(ca, how))
            print(f"floor {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in floor.items()), flush=True)
    text = render(reps, core, floor, f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(text)
    if args.write:
        write_section("## Security", text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
