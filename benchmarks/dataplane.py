"""Data-plane speed on loopback: Stemflow relays next to Redis pub/sub and NATS, in one run.

Publisher -> relay A -> relay B -> subscriber for Stemflow (P=4 connections between the relays);
publisher -> server -> subscriber for Redis and NATS. Every publisher and subscriber is its own
Python process using the system's Python client (stemflow.client, redis-py, nats-py); the
servers are Debian's redis-server and nats-server. The script starts and stops every process by
PID and writes the "## Data plane" section of docs/benchmarks.md (with --write).

Rows:
- goodput, 64 KiB messages: payload bytes received / (last - first arrival), publisher flat out;
- message rate, 1 KiB messages: messages received / (last - first arrival);
- one-way latency at low load (a 128-byte message every 2 ms, monotonic clock stamped in the
  payload; every process runs on the same machine, so the clocks agree);
- added latency per relay hop: the one-way latency minus that of a direct TCP connection
  between two such processes, divided by the servers on the way (2 relays; 1 Redis or NATS
  server). Each system's client costs count against it;
- one-way latency through one server: Stemflow with publisher and subscriber at relay A;
- relay CPU per 1 KiB message (Stemflow): user + system CPU of both relays during the message
  rate row, divided by the messages the subscriber received.
Stemflow is measured twice, with relays on their default loop and on uvloop (`--loop`).
Each row is repeated `--reps` times; the table quotes medians. Every client process of every
system runs on the same event loop (`--loop`, uvloop by default); the one-way latency is measured
once more per system with every client on the other loop, and printed next to the table.

`--acks-cost` measures Stemflow with end-to-end acknowledgements (the default) against the same
relays with `--no-acks`, interleaved, and writes "## End-to-end acknowledgements: cost".

Usage: python benchmarks/dataplane.py [--reps 3] [--loop uvloop|asyncio] [--write]
       python benchmarks/dataplane.py --only stemflow --acks-cost [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from docpage import write_section

from stemflow import eventloop
from stemflow.eventloop import DEFAULT_LOOP

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GOODPUT_BYTES = 64 << 10
RATE_BYTES = 1 << 10
LAT_BYTES = 128
LAT_COUNT = 1000
LAT_EVERY_S = 0.002
RUN_S = 3.0
"""Publishers send for this long in the throughput rows; enough for ~10^5 frames, short
enough to keep the whole run under a few minutes on a shared machine."""
IDLE_S = 2.0
"""A subscriber stops this long after its last message."""
TARGETS = {"goodput_gbps": 3.0, "rate_msgs": 100_000, "hop_p50_us": 100.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- workers (separate processes) -------------------------------------------------------------------


async def _sub_loop(next_msg, mode: str, stop_after: int) -> dict:
    """Receive until `stop_after` messages or IDLE_S of silence; return counts or latencies.

    A watchdog ends the loop, so the per-message path has no timer of its own.
    """
    st = {"n": 0, "bytes": 0, "first": 0, "last": 0}
    lat_us: list[float] = []

    async def run() -> None:
        n = nbytes = 0
        while stop_after == 0 or n < stop_after:
            try:
                data = await next_msg()
            except TimeoutError:
                break
            now = time.monotonic_ns()
            if n == 0:
                st["first"] = now
            n += 1
            nbytes += len(data)
            st["n"], st["bytes"], st["last"] = n, nbytes, now
            if mode == "lat":
                lat_us.append((now - int.from_bytes(data[:8], "big")) / 1000)

    task = asyncio.create_task(run())
    started = time.monotonic_ns()
    while not task.done():
        await asyncio.sleep(0.1)
        idle_ns = time.monotonic_ns() - (st["last"] or started)
        if idle_ns > (IDLE_S if st["n"] else 60) * 1e9:
            task.cancel()
            break
    return {"count": st["n"], "bytes": st["bytes"], "first_ns": st["first"], "last_ns": st["last"],
            "lat_us": lat_us}


def _payload(size: int) -> bytearray:
    return bytearray(os.urandom(size))


async def _pub_loop(send, flush, mode: str, size: int) -> dict:
    data = _payload(size)
    sent = 0
    t0 = time.monotonic()
    if mode == "lat":
        for _ in range(LAT_COUNT):
            data[:8] = time.monotonic_ns().to_bytes(8, "big")
            await send(bytes(data))
            await flush()
            sent += 1
            await asyncio.sleep(LAT_EVERY_S)
    else:
        frozen = bytes(data)
        while time.monotonic() - t0 < RUN_S:
            for _ in range(64):
                await send(frozen)
            sent += 64
            await flush()
    return {"sent": sent}


async def worker_stemflow(role: str, mode: str, size: int, addr: str, status: str) -> dict:
    from stemflow.client import connect

    c = await connect(addr)
    if role == "sub":
        sub = await c.subscribe("bench")
        print("ready", flush=True)

        async def nxt() -> bytes:
            return (await sub.__anext__()).data
        return await _sub_loop(nxt, mode, LAT_COUNT if mode == "lat" else 0)
    stream = c.open_stream("bench")
    await stream.drain()
    while status:  # wait for the controller to plan the session (else frames wait at the ingress)
        with urllib.request.urlopen(status, timeout=5) as r:
            if any(s["id"] == "bench" and s["rate_mbps"] for s in json.load(r)["sessions"]):
                break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)

    async def send(d: bytes) -> None:
        stream.send(d)
    out = await _pub_loop(send, stream.drain, mode, size)
    await c.close()
    return out


async def worker_redis(role: str, mode: str, size: int, addr: str, status: str) -> dict:
    import redis.asyncio as redis

    host, port = addr.split(":")
    r = redis.Redis(host=host, port=int(port))
    if role == "sub":
        ps = r.pubsub(ignore_subscribe_messages=True)
        await ps.subscribe("bench")
        await ps.get_message(timeout=1.0)
        print("ready", flush=True)

        async def nxt() -> bytes:
            while True:
                m = await ps.get_message(ignore_subscribe_messages=True, timeout=IDLE_S)
                if m is None:
                    raise TimeoutError
                return m["data"]
        return await _sub_loop(nxt, mode, LAT_COUNT if mode == "lat" else 0)
    pipe = r.pipeline(transaction=False)

    async def send(d: bytes) -> None:
        pipe.publish("bench", d)

    async def flush() -> None:
        await pipe.execute()
    return await _pub_loop(send, flush, mode, size)


async def worker_nats(role: str, mode: str, size: int, addr: str, status: str) -> dict:
    import nats

    nc = await nats.connect(f"nats://{addr}", pending_size=64 << 20)
    if role == "sub":
        q: asyncio.Queue[bytes] = asyncio.Queue()

        async def cb(msg) -> None:
            q.put_nowait(msg.data)
        await nc.subscribe("bench", cb=cb, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        print("ready", flush=True)
        out = await _sub_loop(q.get, mode, LAT_COUNT if mode == "lat" else 0)
        await nc.close()
        return out

    async def send(d: bytes) -> None:
        await nc.publish("bench", d)
    out = await _pub_loop(send, nc.flush, mode, size)
    await nc.close()
    return out


async def worker_direct(role: str, mode: str, size: int, addr: str, status: str) -> dict:
    """Length-prefixed messages over one plain TCP connection: the latency floor."""
    host, port = addr.split(":")
    if role == "sub":
        q: asyncio.Queue[bytes] = asyncio.Queue()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    n = int.from_bytes(await reader.readexactly(4), "big")
                    q.put_nowait(await reader.readexactly(n))
                except asyncio.IncompleteReadError:
                    return
        server = await asyncio.start_server(handle, host, int(port))
        print("ready", flush=True)
        out = await _sub_loop(q.get, mode, LAT_COUNT)
        server.close()
        return out
    _, writer = await asyncio.open_connection(host, int(port))
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send(d: bytes) -> None:
        writer.write(len(d).to_bytes(4, "big") + d)
    out = await _pub_loop(send, writer.drain, mode, size)
    writer.close()
    return out


WORKERS = {"stemflow": worker_stemflow, "redis": worker_redis, "nats": worker_nats,
           "direct": worker_direct}
LOOPS = ("uvloop", "asyncio")
"""Event loops a worker can run on; every client worker of a run (all systems and the direct
baseline) runs on the same one, and one extra latency row per system runs on the other."""
LOOP_NAMES = {"uvloop": "uvloop", "asyncio": "asyncio's own event loop"}


def other_loop(loop: str) -> str:
    """The loop the reference latency row runs its clients on."""
    return LOOPS[1 - LOOPS.index(loop)]


# -- the harness -------------------------------------------------------------------------------------


class Procs:
    """Every process this run starts, killed by PID at the end; workers run on `loop`."""

    def __init__(self, tmp: Path, loop: str = "asyncio"):
        self.tmp, self.loop = tmp, loop
        self.procs: list[subprocess.Popen] = []
        self.tree = ROOT
        """The source tree whose `stemflow` the processes import (`--baseline` swaps it)."""

    def start(self, name: str, args: list[str], stdout=subprocess.PIPE) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(args, stdout=stdout, stderr=log, cwd=self.tree, bufsize=0,
                             env={**os.environ, "PYTHONPATH": str(self.tree)})
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)


def read_line(p: subprocess.Popen, prefix: str, timeout_s: float = 30.0) -> str:
    assert p.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if select.select([p.stdout], [], [], 0.1)[0]:
            line = p.stdout.readline().decode()
            if line.startswith(prefix):
                return line.strip()
            if not line:
                break
    raise RuntimeError(f"{p.args[:4]} did not print {prefix!r}")


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def run_pair(procs: Procs, system: str, mode: str, size: int, pub_addr: str, sub_addr: str,
             status: str = "", loop: str = "") -> tuple[dict, dict]:
    def worker(role: str, addr: str) -> subprocess.Popen:
        return procs.start(f"{system}-{role}", [PY, str(Path(__file__).resolve()), "--worker",
                                                 loop or procs.loop, system, role, mode, str(size),
                                                 addr, status])
    sub = worker("sub", sub_addr)
    read_line(sub, "ready")
    pub = worker("pub", pub_addr)
    pub_out, _ = pub.communicate(timeout=120)
    sub_out, _ = sub.communicate(timeout=120)
    def last_json(out: bytes) -> dict:
        return json.loads(out.decode().strip().splitlines()[-1])
    return last_json(pub_out), last_json(sub_out)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes `pids` have used so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total / os.sysconf("SC_CLK_TCK")


def measure(procs: Procs, system: str, pub_addr: str, sub_addr: str, status: str = "",
            servers: list[int] | None = None) -> dict:
    out: dict = {}
    _, s = run_pair(procs, system, "rate", GOODPUT_BYTES, pub_addr, sub_addr, status)
    out["goodput_gbps"] = s["bytes"] * 8 / max(1, s["last_ns"] - s["first_ns"])
    before = cpu_s(servers) if servers else 0.0
    _, s = run_pair(procs, system, "rate", RATE_BYTES, pub_addr, sub_addr, status)
    out["rate_msgs"] = s["count"] / max(1e-9, (s["last_ns"] - s["first_ns"]) / 1e9)
    if servers:
        out["relay_cpu_us_per_msg"] = (cpu_s(servers) - before) * 1e6 / max(1, s["count"])
    out["lat_p50_us"], out["lat_p99_us"] = latency(procs, system, pub_addr, sub_addr, status)
    out["other_loop_p50_us"], _ = latency(procs, system, pub_addr, sub_addr, status, other_loop(procs.loop))
    return out


def latency(procs: Procs, system: str, pub_addr: str, sub_addr: str, status: str = "",
            loop: str = "") -> tuple[float, float]:
    _, s = run_pair(procs, system, "lat", LAT_BYTES, pub_addr, sub_addr, status, loop)
    lat = sorted(s["lat_us"])
    return statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]


def direct_latency(procs: Procs, reps: int, loop: str = "") -> tuple[float, float]:
    """One-way latency (p50, p99) of a plain TCP connection: the median of `reps` runs."""
    runs = [latency(procs, "direct", f"127.0.0.1:{port}", f"127.0.0.1:{port}", loop=loop)
            for port in (free_port() for _ in range(reps))]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def bench_stemflow(procs: Procs, tmp: Path, direct: tuple[float, float], relay_loop: str,
                   tree: Path = ROOT, relay_args: tuple[str, ...] = ()) -> dict:
    """Two relays and the controller on `relay_loop` (the relays' `--loop`), every Stemflow
    process importing the `stemflow` of `tree`; `relay_args` added to each relay's command."""
    procs.tree = tree
    try:
        return _bench_stemflow(procs, tmp, direct, relay_loop, relay_args)
    finally:
        procs.tree = ROOT


def _bench_stemflow(procs: Procs, tmp: Path, direct: tuple[float, float], relay_loop: str,
                    relay_args: tuple[str, ...] = ()) -> dict:
    scenario = tmp / "bench.yaml"
    scenario.write_text("name: dataplane\ndatacenters: [{name: a}, {name: b}]\nlinks:\n"
                        "  - {a: a, b: b, rtt_ms: 1, bandwidth_mbps: 100000}\n"
                        "clients: []\nsessions: []\n")
    ctl = procs.start("controller", [PY, "-m", "stemflow.cli", "controller", "--listen", "127.0.0.1:0",
                                     "--status", "127.0.0.1:0", "--strategy", "shortest",
                                     "--scenario", str(scenario), "--log-level", "WARNING",
                                     "--loop", relay_loop])
    port = read_line(ctl, "controller listening").rsplit(":", 1)[1]
    status = read_line(ctl, "controller status").split()[-1]
    addr = {}
    relays = []
    for dc in ("a", "b"):
        p = procs.start(f"relay-{dc}", [PY, "-m", "stemflow.cli", "relay", "--dc", dc, "--listen",
                                        "127.0.0.1:0", "--controller", f"127.0.0.1:{port}",
                                        "--parallel", "4", "--log-level", "WARNING",
                                        "--loop", relay_loop, *relay_args])
        addr[dc] = read_line(p, f"relay {dc} listening").split()[-1]
        relays.append(p.pid)
    time.sleep(1.5)  # registered, peers connected
    out = measure(procs, "stemflow", addr["a"], addr["b"], status, relays)
    one_p50, one_p99 = latency(procs, "stemflow", addr["a"], addr["a"])  # local: no plan needed
    out["one_server_p50_us"], out["one_server_p99_us"] = one_p50, one_p99
    out["hop_p50_us"] = (out["lat_p50_us"] - direct[0]) / 2  # two relays on the way
    out["hop_p99_us"] = (out["lat_p99_us"] - direct[1]) / 2
    return out


def bench_redis(procs: Procs, tmp: Path, direct: tuple[float, float]) -> dict:
    port = free_port()
    procs.start("redis-server", [shutil.which("redis-server") or "redis-server", "--port", str(port),
                                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--client-output-buffer-limit", "pubsub 0 0 0", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL)
    wait_port(port)
    out = measure(procs, "redis", f"127.0.0.1:{port}", f"127.0.0.1:{port}")
    out["one_server_p50_us"], out["one_server_p99_us"] = out["lat_p50_us"], out["lat_p99_us"]
    out["hop_p50_us"], out["hop_p99_us"] = out["lat_p50_us"] - direct[0], out["lat_p99_us"] - direct[1]
    return out


def bench_nats(procs: Procs, tmp: Path, direct: tuple[float, float]) -> dict:
    port = free_port()
    procs.start("nats-server", [shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL)
    wait_port(port)
    out = measure(procs, "nats", f"127.0.0.1:{port}", f"127.0.0.1:{port}")
    out["one_server_p50_us"], out["one_server_p99_us"] = out["lat_p50_us"], out["lat_p99_us"]
    out["hop_p50_us"], out["hop_p99_us"] = out["lat_p50_us"] - direct[0], out["lat_p99_us"] - direct[1]
    return out


def median_rows(reps: list[dict]) -> dict:
    """Per metric: the median, and (under key + "_range") the lowest and highest run."""
    out: dict = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    out.update({k + "_range": (min(r[k] for r in reps), max(r[k] for r in reps)) for k in reps[0]})
    return out


def render(results: dict[str, dict], reps: int, loop: str, direct: tuple[float, float], direct_other: float,
           load: str) -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"model name\s*:\s*(.*)", f.read())
        cpu = m.group(1).strip() if m else cpu
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    sf, su, rd, na = (results[k] for k in ("stemflow", "stemflow-uvloop", "redis", "nats"))
    rows = [  # label, key, format, target, higher is better, compared (False: reference only)
        ("goodput, 64 KiB messages (Gbit/s)", "goodput_gbps", "{:.2f}", f"≥ {TARGETS['goodput_gbps']}",
         True, True),
        ("message rate, 1 KiB messages (msg/s)", "rate_msgs", "{:,.0f}", f"≥ {TARGETS['rate_msgs']:,}",
         True, True),
        ("added per relay hop p50 (µs)", "hop_p50_us", "{:.0f}", f"≤ {TARGETS['hop_p50_us']:.0f}",
         False, True),
        ("added per relay hop p99 (µs)", "hop_p99_us", "{:.0f}", "", False, True),
        ("one-way latency p50, one server on the way (µs)", "one_server_p50_us", "{:.0f}", "", False, True),
        ("one-way latency p99, one server on the way (µs)", "one_server_p99_us", "{:.0f}", "", False, True),
        ("one-way latency p50, Stemflow through two relays (µs)", "lat_p50_us", "{:.0f}", "", False, False),
        ("one-way latency p99, Stemflow through two relays (µs)", "lat_p99_us", "{:.0f}", "", False, False),
    ]
    lines = [
        "## Data plane", "",
        f"`benchmarks/dataplane.py`, {date}, {platform.node()} ({os.cpu_count()} cores, {cpu}, "
        f"kernel {platform.release()}, Python {platform.python_version()}); loopback; median of "
        f"{reps} runs per row (lowest–highest run in parentheses), all systems measured in the same "
        f"run; load average {load}. Stemflow: publisher → relay A → "
        "relay B → subscriber, 4 TCP connections between the relays. Redis 7 pub/sub (redis-py, "
        "pipelined publishes) and NATS 2.9 (nats-py): publisher → server → subscriber. Every client "
        "and server is its own process; 2 cores are shared by 4 (Stemflow) or 3 processes. "
        f"Every client process of every system, and of the direct baseline, runs on {LOOP_NAMES[loop]}. "
        f"The Stemflow relays and controller run on {LOOP_NAMES[DEFAULT_LOOP]} (their default, "
        "'Stemflow' column) or on uvloop (`--loop uvloop`, 'Stemflow, uvloop relays' column; not the "
        "default, see docs/relays.md, \"Known gaps\"); 'ahead' compares the default with Redis and NATS. "
        "Throughput rows: publisher flat out for 3 s, rate measured at the subscriber between first "
        f"and last arrival. Latency rows: a {LAT_BYTES}-byte message every 2 ms, {LAT_COUNT} messages. "
        "Added per relay hop = (one-way latency − one-way latency of a direct TCP connection between "
        f"two processes, p50 {direct[0]:.0f} µs, p99 {direct[1]:.0f} µs) / servers on the way (2 relays; "
        "1 Redis or NATS server); p99 rows subtract p99s and are noise-dominated. 'One server on "
        "the way': Stemflow with publisher and subscriber at relay A, Redis and NATS as above. "
        f"With every client on {LOOP_NAMES[other_loop(loop)]} "
        "instead (same run, same servers): one-way latency p50 "
        + ", ".join(f"{name} {r['other_loop_p50_us']:.0f} µs ({r['other_loop_p50_us_range'][0]:.0f}–"
                    f"{r['other_loop_p50_us_range'][1]:.0f})"
                    for name, r in (("Stemflow", sf), ("Stemflow with uvloop relays", su),
                                    ("Redis", rd), ("NATS", na)))
        + f", direct TCP {direct_other:.0f} µs.", "",
        "| row | Stemflow | Stemflow, uvloop relays | Redis | NATS | target | met (Stemflow) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for label, key, fmt, target, higher, compared in rows:
        v = [sf[key], rd[key], na[key]]
        ahead = v[0] > max(v[1:]) if higher else v[0] < min(v[1:])
        uv = su[key] > max(v[1:]) if higher else su[key] < min(v[1:])
        met = []
        if target:
            goal = float(target.split()[-1].replace(",", ""))
            met.append("target " + ("yes" if (v[0] >= goal if higher else v[0] <= goal) else "**no**"))
        if compared:
            met.append("ahead of both" if ahead else "**not ahead of both**")
            met.append("uvloop relays " + ("ahead" if uv else "not ahead"))
        else:
            met.append("reference: a longer path than Redis's and NATS's")
        cells = " | ".join(fmt.format(r[key]) + " (" + "–".join(fmt.format(y) for y in r[key + "_range"])
                           + ")" for r in (sf, su, rd, na))
        lines.append(f"| {label} | {cells} | {target} | {'; '.join(met)} |")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


NOTES = (
    "Reading the table. Through two relays Stemflow's path has three TCP hops, Redis's and NATS's "
    "one server and two hops, so the two-relay latency rows are for reference; the per-hop rows "
    "and the one-server rows are the like-for-like comparisons. All clients are Python; on 2 "
    "shared cores the clients take as much CPU as the servers, so these are numbers for the whole "
    "chain, not for a server alone. The machine is shared with other jobs and single runs vary "
    "widely (see the ranges), which is why the table quotes medians and all systems run "
    "interleaved."
)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        loop, system, role, mode, size, addr, status = (argv[1:8] + [""])[:7]
        out = eventloop.run(WORKERS[system](role, mode, int(size), addr, status), loop)
        print(json.dumps(out), flush=True)
        return 0
    # killed by PID (SIGTERM), the run still stops every process it started (`finally` below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--loop", choices=LOOPS, default="uvloop",
                   help="event loop of every client worker, all systems alike (default: uvloop)")
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    p.add_argument("--only", choices=["stemflow", "redis", "nats"],
                   help="measure one system and print its numbers (no table)")
    p.add_argument("--skip-uvloop", action="store_true",
                   help="do not measure Stemflow with uvloop relays (shorter before/after runs)")
    p.add_argument("--acks-cost", action="store_true",
                   help="also measure Stemflow with relays started --no-acks, interleaved, and "
                        "print each row as a ratio (acknowledgements on / off)")
    p.add_argument("--baseline", type=Path, metavar="TREE",
                   help="also measure the Stemflow of another source tree (e.g. a git worktree of an "
                        "older commit), interleaved, and print each row as a ratio to it")
    args = p.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "stemflow" / "relay").is_dir():
        p.error(f"--baseline {args.baseline}: not a Stemflow source tree (no stemflow/relay/)")
    if importlib.util.find_spec("uvloop") is None:
        p.error("uvloop is not installed (every run measures on it; pip install -e '.[bench]')")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dataplane-") as t:
        tmp = Path(t)
        procs = Procs(tmp, args.loop)
        try:
            direct = direct_latency(procs, args.reps)
            direct_other = direct_latency(procs, args.reps, other_loop(args.loop))[0]
            reps: dict[str, list[dict]] = {"stemflow": [], "stemflow-uvloop": [], "redis": [], "nats": []}
            systems = (("stemflow", lambda: bench_stemflow(procs, tmp, direct, DEFAULT_LOOP)),
                       ("stemflow-uvloop", lambda: bench_stemflow(procs, tmp, direct, "uvloop")),
                       ("redis", lambda: bench_redis(procs, tmp, direct)),
                       ("nats", lambda: bench_nats(procs, tmp, direct)))
            if args.baseline is not None:
                reps["stemflow-baseline"] = []
                systems = ((systems[0], ("stemflow-baseline", lambda: bench_stemflow(
                    procs, tmp, direct, DEFAULT_LOOP, args.baseline.resolve())), *systems[1:]))
            if args.acks_cost:
                reps["stemflow-baseline"] = []
                systems = ((systems[0], ("stemflow-baseline", lambda: bench_stemflow(
                    procs, tmp, direct, DEFAULT_LOOP, relay_args=("--no-acks",))), *systems[1:]))
            if args.skip_uvloop:
                systems = tuple(x for x in systems if x[0] != "stemflow-uvloop")
            for i in range(args.reps):
                for name, fn in systems:
                    if args.only and name.split("-")[0] != args.only:
                        continue
                    r = fn()
                    reps[name].append(r)
                    print(f"rep {i + 1} {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()),
                          flush=True)
                    procs.close()
                    procs.procs.clear()
        finally:
            procs.close()
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs share the machine)"
    if args.only:
        if args.acks_cost:
            section = render_acks_cost({k: median_rows(v) for k, v in reps.items() if v}, reps, load)
            print(section)
            if args.write:
                write_section(ACKS_TITLE, section)
        elif args.baseline is not None:
            print(render_versus({k: median_rows(v) for k, v in reps.items() if v}, reps,
                                args.baseline, load))
        return 0
    results = {k: median_rows(v) for k, v in reps.items() if v}
    if "stemflow-uvloop" in results:  # the full table needs both relay loops
        section = render(results, args.reps, args.loop, direct, direct_other, load)
        print(section)
        if args.write:
            write_section("## Data plane", section)
    if args.baseline is not None:
        versus = render_versus(results, reps, args.baseline, load)
        print(versus)
        if args.write:
            write_section("## Data plane against an earlier tree", versus)
    return 0


VERSUS_ROWS = (("goodput, 64 KiB messages (Gbit/s)", "goodput_gbps", "{:.2f}", True),
               ("message rate, 1 KiB messages (msg/s)", "rate_msgs", "{:,.0f}", True),
               ("added per relay hop p50 (µs)", "hop_p50_us", "{:.0f}", False),
               ("added per relay hop p99 (µs)", "hop_p99_us", "{:.0f}", False),
               ("relay CPU per 1 KiB message, both relays (µs)", "relay_cpu_us_per_msg", "{:.1f}",
                False))


def render_versus(results: dict[str, dict], reps: dict[str, list[dict]], baseline: Path,
                  load: str) -> str:
    """This tree's Stemflow (default relays) against the baseline tree's, measured interleaved:
    medians, and the median of the per-repetition ratios (each pair ran back to back)."""
    rev = subprocess.run(["git", "-C", str(baseline), "log", "-1", "--format=%h %s"],
                         capture_output=True, text=True).stdout.strip()[:90] or str(baseline)
    now = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"],
                         capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    new, old = results["stemflow"], results["stemflow-baseline"]
    lines = ["## Data plane against an earlier tree", "",
             f"`benchmarks/dataplane.py --baseline`, {date}, {platform.node()} ({os.cpu_count()} cores); "
             f"this tree ({now}, working tree as run) against `{rev}`, relays on their default loop, "
             f"{len(reps['stemflow'])} repetitions, each pair back to back; load average {load}. "
             "Ratio: median over repetitions of this tree / baseline (for latency rows > 1 is slower).",
             "", "| row | this tree | baseline | ratio (range) |", "|---|---:|---:|---:|"]
    for label, key, fmt, _ in VERSUS_ROWS:
        ratios = [a[key] / b[key] for a, b in zip(reps["stemflow"], reps["stemflow-baseline"],
                                                  strict=True) if b[key]]
        r = statistics.median(ratios) if ratios else float("nan")
        span = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "–"
        lines.append(f"| {label} | {fmt.format(new[key])} | {fmt.format(old[key])} | {r:.3f} ({span}) |")
    return "\n".join(lines) + "\n"


ACKS_TITLE = "## End-to-end acknowledgements: cost"


def render_acks_cost(results: dict[str, dict], reps: dict[str, list[dict]], load: str) -> str:
    """Relays with acknowledgements (default) against relays started `--no-acks`, interleaved."""
    now = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"],
                         capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    on, off = results["stemflow"], results["stemflow-baseline"]
    lines = [ACKS_TITLE, "",
             f"`benchmarks/dataplane.py --only stemflow --acks-cost`, {date}, {platform.node()} "
             f"({os.cpu_count()} cores, shared, noisy), commit {now}; publisher → relay A → relay B → "
             "subscriber, reliable stream, relays on their default loop, "
             f"{len(reps['stemflow'])} repetitions, each pair back to back; load average {load}. "
             "On: the default (the publisher keeps every message until acknowledged end to end, the "
             "egress announces, the ingress tells); off: both relays `--no-acks` (the client then "
             "keeps nothing). Ratio: median over repetitions of on / off (for latency and CPU "
             "rows > 1 is costlier).",
             "", "| row | acks on | acks off | ratio on/off (range) |", "|---|---:|---:|---:|"]
    for label, key, fmt, _ in VERSUS_ROWS:
        ratios = [a[key] / b[key] for a, b in zip(reps["stemflow"], reps["stemflow-baseline"],
                                                  strict=True) if b[key]]
        r = statistics.median(ratios) if ratios else float("nan")
        span = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "–"
        lines.append(f"| {label} | {fmt.format(on[key])} | {fmt.format(off[key])} | {r:.3f} ({span}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
