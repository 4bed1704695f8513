"""Web gateway speed on loopback: browsers through two gateways and two relays, beside
`stemflow.client` on the same relays, in one run; and one gateway under 1 000 WebSocket clients.

Rows:
- one-way latency of a 1 KB text message, browser to browser: headless Chromium page A on
  gateway a (relay a) publishes with stemflow.js, page B on gateway b (relay b) echoes it back,
  one-way = round trip / 2 (one clock, so no clock question). Beside it, the same echo between two
  `stemflow.client` connections at relay a and relay b. The gateway pair's cost is the
  difference of the medians;
- a 10 MB file, browser to browser (stemflow.js fragments of 256 KiB, each acknowledged), from the
  start of `publish` at A to the whole file at B (both pages read the machine's wall clock);
  beside it `stemflow.client` sending the same bytes on a reliable stream in 256 KiB messages from
  relay a to a subscriber at relay b;
- one gateway with `--clients` WebSocket clients (scripted, in two worker processes, speaking the
  gateway format directly), each in one of `--rooms` rooms, each publishing a 1 KB chat message
  (stemflow.js's envelope, via stemflow.gateway.envelope) once a second at a random phase;
  delivery latency from the publisher's send to each member's receipt (the envelope's send
  time, wall clock; one machine), p50 and p99 over `--seconds` after a warm-up, and the
  gateway's RSS at the end (its /status page).

Each browser/client row is measured `--reps` times, interleaved; the table quotes medians with the
lowest and highest run. Writes the "## Web gateway" section of docs/benchmarks.md with --write.

Usage: python benchmarks/gateway.py [--reps 5] [--clients 1000] [--rooms 50] [--seconds 20]
                                    [--swarm-reps 3] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback process helpers the tests use
sys.path.insert(0, str(Path(__file__).parent))

from docpage import write_section  # noqa: E402
from gatewaynet import Gateways  # noqa: E402
from relaynet import Overlay  # noqa: E402

from stemflow.client import connect  # noqa: E402
from stemflow.gateway import envelope, wire  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXT_BYTES = 1000
ECHOES = 400
"""Round trips per latency run (after WARMUP): enough for a p99 of a few samples."""
WARMUP = 50
"""Round trips discarded first: the controller plans the topics' sessions on first use."""
FILE_BYTES = 10 * 1000 * 1000
FRAGMENT_BYTES = 256 << 10
"""stemflow.js's FRAGMENT_BYTES; the client baseline sends messages of the same size."""
TARGETS = {"added_p50_ms": 1.0, "file_ratio": 1.5, "swarm_p99_ms": 50.0}
SWARM_WARMUP_S = 3.0
"""Seconds of the swarm run not measured: connections, subscriptions and first plans."""
MESSAGE_HEADER_BYTES = len(wire.message_header(0, wire.MessageFlag.NONE, 0.0))


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- stemflow.client baselines -------------------------------------------------------------------------

async def client_echo(relay_a: str, relay_b: str, n: int) -> list[float]:
    """One-way latencies (ms) of 1 KB messages, relay a -> relay b and back, halved."""
    a, b = await connect(relay_a), await connect(relay_b)
    pings, pongs = await b.subscribe("bench/c-ping"), await a.subscribe("bench/c-pong")
    tasks: set[asyncio.Task] = set()

    async def echo() -> None:
        async for m in pings:
            t = asyncio.create_task(b.publish("bench/c-pong", m.data, delay_sensitive=True))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    echoer = asyncio.create_task(echo())
    out = []
    payload = bytes(TEXT_BYTES)
    for i in range(WARMUP + n):
        t0 = time.perf_counter()
        t = asyncio.create_task(a.publish("bench/c-ping", payload, delay_sensitive=True))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        await pongs.get(10)
        if i >= WARMUP:
            out.append((time.perf_counter() - t0) * 1000 / 2)
    echoer.cancel()
    await a.close()
    await b.close()
    return out


async def client_file(relay_a: str, relay_b: str, warm: bool) -> float:
    """Seconds for FILE_BYTES in FRAGMENT_BYTES messages on a reliable stream, a -> b."""
    a, b = await connect(relay_a), await connect(relay_b)
    sub = await b.subscribe("bench/c-file")
    stream = a.open_stream("bench/c-file")
    if warm:  # the first message makes the controller plan the session
        stream.send(b"warm")
        await sub.get(10)
    body = os.urandom(FILE_BYTES)
    n = -(-FILE_BYTES // FRAGMENT_BYTES)
    t0 = time.perf_counter()
    for i in range(n):
        await stream.write(body[i * FRAGMENT_BYTES:(i + 1) * FRAGMENT_BYTES])
    got = 0
    while got < FILE_BYTES:
        got += len((await sub.get(30)).data)
    elapsed = time.perf_counter() - t0
    await a.close()
    await b.close()
    return elapsed


# -- scripted WebSocket clients through the same gateways (the gateway pair without a browser) ---------

async def _ws_open(session, url: str, sub_id: int, topic: str):
    ws = await session.ws_connect(url, max_msg_size=0)
    await ws.send_bytes(wire.hello())
    await ws.receive()
    await ws.send_bytes(wire.subscribe(sub_id, topic))
    await ws.receive()
    return ws


async def _next_message(ws) -> bytes:
    while True:
        m = await ws.receive(30)
        if m.data[0] == wire.GatewayOp.MESSAGE:
            return m.data


async def ws_echo(url_a: str, url_b: str, n: int) -> list[float]:
    """As client_echo, between two WebSocket clients on gateway a and gateway b."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        b = await _ws_open(s, url_b, 1, "bench/w-ping")
        a = await _ws_open(s, url_a, 2, "bench/w-pong")

        async def echo() -> None:
            while True:
                data = await _next_message(b)
                await b.send_bytes(wire.publish(0, "bench/w-pong", data[14:], delay_sensitive=True))
        echoer = asyncio.create_task(echo())
        out = []
        payload = bytes(TEXT_BYTES)
        for i in range(WARMUP + n):
            t0 = time.perf_counter()
            await a.send_bytes(wire.publish(0, "bench/w-ping", payload, delay_sensitive=True))
            await _next_message(a)
            if i >= WARMUP:
                out.append((time.perf_counter() - t0) * 1000 / 2)
        echoer.cancel()
        await a.close()
        await b.close()
    return out


async def ws_gateway_rtts(url: str, n: int) -> list[float]:
    """Round trips (ms) of PING/PONG from a scripted client to a gateway."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(url)
        await ws.send_bytes(wire.hello())
        await ws.receive()
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            await ws.send_bytes(wire.ping(i + 1))
            await ws.receive()
            out.append((time.perf_counter() - t0) * 1000)
        await ws.close()
    return out


async def ws_file(url_a: str, url_b: str, warm: bool) -> float:
    """As client_file, from a WebSocket client on gateway a to one on gateway b (acknowledged
    publishes, at most 16 in flight, like stemflow.js's window)."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        b = await _ws_open(s, url_b, 1, "bench/w-file")
        a = await s.ws_connect(url_a, max_msg_size=0)
        await a.send_bytes(wire.hello())
        await a.receive()
        if warm:
            await a.send_bytes(wire.publish(0, "bench/w-file", b"warm"))
            await _next_message(b)
        body = os.urandom(FILE_BYTES)
        n = -(-FILE_BYTES // FRAGMENT_BYTES)
        window = asyncio.Semaphore(16)

        async def acks() -> None:
            async for _ in a:
                window.release()
        acker = asyncio.create_task(acks())
        t0 = time.perf_counter()

        async def receive() -> None:
            got = 0
            while got < FILE_BYTES:
                got += len(await _next_message(b)) - 14
        receiver = asyncio.create_task(receive())
        for i in range(n):
            await window.acquire()
            piece = body[i * FRAGMENT_BYTES:(i + 1) * FRAGMENT_BYTES]
            await a.send_bytes(wire.publish(i + 1, "bench/w-file", piece))
        await receiver
        elapsed = time.perf_counter() - t0
        acker.cancel()
        await a.close()
        await b.close()
    return elapsed


# -- browsers ----------------------------------------------------------------------------------------

BROWSER_SETUP = """async () => {
  const sf = await import('/stemflow.js');
  window.sf = await sf.connect([new URL('/ws', location.href).toString().replace('http', 'ws')]);
  return window.sf.dc;
}"""

ECHO_SIDE = """async () => {
  await window.sf.subscribe('bench/b-ping', (m) => {
    window.sf.publish('bench/b-pong', m.data, { delaySensitive: true });
  });
  window.fileDone = null;
  await window.sf.subscribe('bench/b-file', (m) => {
    if (m.data.length > 100) window.fileDone = performance.timeOrigin + performance.now();
  });
  await window.sf.subscribe('bench/b-wsfile', (m) => {
    if (m.data.length > 100) window.fileDone = performance.timeOrigin + performance.now();
  }, { http: false });
}"""

PING_SIDE = """async ([n, warmup, size]) => {
  let wake = null;
  await window.sf.subscribe('bench/b-pong', () => { if (wake) { const w = wake; wake = null; w(); } });
  const payload = new Uint8Array(size);
  const out = [];
  for (let i = 0; i < warmup + n; i++) {
    const t0 = performance.now();
    const back = new Promise((r) => { wake = r; });
    window.sf.publish('bench/b-ping', payload, { delaySensitive: true });
    await back;
    if (i >= warmup) out.push((performance.now() - t0) / 2);
  }
  return out;
}"""

SEND_FILE = """async ([size, warm, http]) => {
  const topic = http ? 'bench/b-file' : 'bench/b-wsfile';
  if (warm) await window.sf.publish(topic, new Uint8Array(8));
  const body = crypto.getRandomValues(new Uint8Array(65536));
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += body.length) data.set(body.subarray(0, Math.min(body.length, size - i)), i);
  const t0 = performance.timeOrigin + performance.now();
  await window.sf.publish(topic, data, { http });
  return t0;
}"""


RAW_SEND = """async ([size, fragment]) => {
  const ws = window.sf.link.ws;
  const topic = new TextEncoder().encode('bench/unread');
  const m = new Uint8Array(7 + topic.length + fragment);
  m[0] = 0x05; m[5] = 0; m[6] = topic.length; m.set(topic, 7);
  const t0 = performance.now();
  for (let sent = 0; sent < size; sent += fragment) ws.send(m);
  while (ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 0));
  return performance.now() - t0;
}"""


class BrowserPair:
    def __init__(self, g: Gateways):
        from playwright.sync_api import sync_playwright

        chromium = shutil.which("chromium")
        if chromium is None:
            raise SystemExit("benchmarks/gateway.py: needs Debian's chromium (bash .ci/setup --tests)")
        self.pw = sync_playwright().start()
        self.profiles = [tempfile.mkdtemp(prefix="stemflow-bench-") for _ in range(2)]
        self.contexts = [self.pw.chromium.launch_persistent_context(
            p, executable_path=chromium, headless=True, args=CHROMIUM_ARGS) for p in self.profiles]
        self.a, self.b = (c.pages[0] if c.pages else c.new_page() for c in self.contexts)
        for page, dc in ((self.a, "a"), (self.b, "b")):
            page.goto(f"{g.url[dc]}/chat/")
            assert page.evaluate(BROWSER_SETUP) == dc
        self.b.evaluate(ECHO_SIDE)
        self.warm = {True: True, False: True}

    def echo(self, n: int) -> list[float]:
        return self.a.evaluate(PING_SIDE, [n, WARMUP, TEXT_BYTES])

    def file(self, http: bool = True) -> float:
        """Seconds from publish at A to the whole file at B: by HTTP to and from the gateways
        (stemflow.js's default), or (`http=False`) in WebSocket fragments both ends."""
        self.b.evaluate("window.fileDone = null")
        t0 = self.a.evaluate(SEND_FILE, [FILE_BYTES, self.warm[http], http])
        self.warm[http] = False
        self.b.wait_for_function("window.fileDone !== null", timeout=60_000)
        return (self.b.evaluate("window.fileDone") - t0) / 1000

    def gateway_rtts(self, n: int) -> list[float]:
        """Round trips (ms) of PING/PONG from page A to its gateway: the browser's own share of a hop."""
        return self.a.evaluate("""async (n) => { const out = [];
            for (let i = 0; i < n; i++) out.push(await window.sf.link.ping()); return out; }""", n)

    def raw_send(self) -> float:
        """Seconds Chromium takes to push FILE_BYTES through its WebSocket to gateway a in
        FRAGMENT_BYTES messages (live publishes to an unread topic): the browser's own share."""
        return self.a.evaluate(RAW_SEND, [FILE_BYTES, FRAGMENT_BYTES]) / 1000

    def close(self) -> None:
        for c in self.contexts:
            c.close()
        self.pw.stop()
        for p in self.profiles:
            shutil.rmtree(p, ignore_errors=True)


# -- the swarm: many scripted WebSocket clients on one gateway --------------------------------------

async def swarm_worker(url: str, first: int, count: int, rooms: int, seconds: float) -> dict:
    """Clients first..first+count-1; returns latencies (ms) measured after the warm-up."""
    import random

    import aiohttp

    start = time.time()
    measure_from, stop_at = start + SWARM_WARMUP_S, start + SWARM_WARMUP_S + seconds
    latencies: list[float] = []
    sent = 0
    text = b"x" * TEXT_BYTES

    async def member(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal sent
        ws = await session.ws_connect(url, max_msg_size=0)
        await ws.send_bytes(wire.hello())
        await ws.receive()
        room = f"bench/room-{i % rooms}"
        await ws.send_bytes(wire.subscribe(1, room))

        async def read() -> None:
            async for msg in ws:
                if msg.data[0] == wire.GatewayOp.MESSAGE:
                    now_ms = time.time() * 1000
                    sent_ms = envelope.decode(msg.data[MESSAGE_HEADER_BYTES:]).sent_ms
                    if sent_ms >= measure_from * 1000:
                        latencies.append(now_ms - sent_ms)
        reader = asyncio.create_task(read())
        await asyncio.sleep(random.random())
        sender, meta = os.urandom(8), json.dumps({"name": f"member {i}", "kind": "text"})
        number = 0
        while time.time() < stop_at:
            number += 1
            (frame,) = envelope.fragments(sender, number, text, sent_ms=time.time() * 1000, dc="a", meta=meta)
            await ws.send_bytes(wire.publish(0, room, frame, delay_sensitive=True))
            sent += 1
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.0)  # the last messages arrive
        reader.cancel()
        await ws.close()

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(member(session, i) for i in range(first, first + count)))
    return {"latencies": latencies, "sent": sent}


def swarm(g: Gateways, clients: int, rooms: int, seconds: float, workers: int = 2) -> dict:
    per = -(-clients // workers)
    procs = []
    for w in range(workers):
        n = min(per, clients - w * per)
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--swarm-worker", g.ws_url("a"), str(w * per), str(n), str(rooms),
             str(seconds)], stdout=subprocess.PIPE, cwd=ROOT))
    results = []
    rss = 0
    deadline = time.time() + SWARM_WARMUP_S + seconds
    while time.time() < deadline:  # the gateway's peak RSS while the swarm runs
        time.sleep(1.0)
        with urllib.request.urlopen(g.url["a"] + "/status", timeout=10) as r:
            st = json.load(r)
        rss = max(rss, st["rss_bytes"])
    for p in procs:
        out, _ = p.communicate(timeout=120)
        results.append(json.loads(out))
    lat = [x for r in results for x in r["latencies"]]
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "deliveries": len(lat),
            "sent": sum(r["sent"] for r in results), "rss_mb": rss / 1e6, "browsers": st["browsers"]}


# -- the run -----------------------------------------------------------------------------------------

def off_thread(coro):
    """Run a coroutine to completion on its own loop in a thread (Playwright's sync API holds
    this thread's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def med(xs: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gateway.py")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--swarm-reps", type=int, default=3)
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    p.add_argument("--swarm-worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.swarm_worker:
        url, first, count, rooms, seconds = args.swarm_worker
        print(json.dumps(asyncio.run(swarm_worker(url, int(first), int(count), int(rooms), float(seconds)))))
        return 0

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="stemflow-bench-gw-"))
    o = Overlay(tmp, ["a", "b"], "direct_hop")
    g = browsers = None
    rows: dict[str, list[float]] = {k: [] for k in ("c_p50", "c_p99", "b_p50", "b_p99", "w_p50", "w_p99",
                                                     "c_file", "b_file", "bw_file", "w_file", "raw_send",
                                                     "b_ping", "w_ping")}
    try:
        g = Gateways(o, ["a", "b"])
        browsers = BrowserPair(g)
        for rep in range(args.reps):
            c = off_thread(client_echo(o.addr["a"], o.addr["b"], ECHOES))
            b = browsers.echo(ECHOES)
            w = off_thread(ws_echo(g.ws_url("a"), g.ws_url("b"), ECHOES))
            rows["c_p50"].append(pct(c, 0.5))
            rows["c_p99"].append(pct(c, 0.99))
            rows["b_p50"].append(pct(b, 0.5))
            rows["b_p99"].append(pct(b, 0.99))
            rows["w_p50"].append(pct(w, 0.5))
            rows["w_p99"].append(pct(w, 0.99))
            rows["c_file"].append(off_thread(client_file(o.addr["a"], o.addr["b"], rep == 0)))
            rows["b_file"].append(browsers.file())
            rows["bw_file"].append(browsers.file(http=False))
            rows["w_file"].append(off_thread(ws_file(g.ws_url("a"), g.ws_url("b"), rep == 0)))
            rows["raw_send"].append(browsers.raw_send())
            rows["b_ping"].append(pct(browsers.gateway_rtts(ECHOES), 0.5))
            rows["w_ping"].append(pct(off_thread(ws_gateway_rtts(g.ws_url("a"), ECHOES)), 0.5))
            print(f"rep {rep + 1}/{args.reps}: one-way p50 client {rows['c_p50'][-1]:.3f} ms, browser "
                  f"{rows['b_p50'][-1]:.3f} ms, ws {rows['w_p50'][-1]:.3f} ms; "
                  f"10 MB client {rows['c_file'][-1]:.3f} s, "
                  f"browser {rows['b_file'][-1]:.3f} s (WebSocket fragments {rows['bw_file'][-1]:.3f} s), "
                  f"ws {rows['w_file'][-1]:.3f} s, chromium send alone "
                  f"{rows['raw_send'][-1]:.3f} s", flush=True)
        browsers.close()
        browsers = None
        swarms = []
        for rep in range(args.swarm_reps):
            print(f"swarm {rep + 1}/{args.swarm_reps}: {args.clients} clients, {args.rooms} rooms, "
                  f"{args.seconds:.0f} s ...", flush=True)
            swarms.append(swarm(g, args.clients, args.rooms, args.seconds))
            print(json.dumps(swarms[-1]), flush=True)
    finally:
        if browsers is not None:
            browsers.close()
        if g is not None:
            g.close()
        o.close()
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()[0]

    sw = {k: [r[k] for r in swarms] for k in swarms[0]} if swarms else None

    def added(col: str) -> tuple[float, list[float]]:
        per_run = [x - c for x, c in zip(rows[f"{col}_p50"], rows["c_p50"], strict=True)]
        return statistics.median(rows[f"{col}_p50"]) - statistics.median(rows["c_p50"]), per_run

    def ratio(col: str) -> tuple[float, list[float]]:
        per_run = [x / c for x, c in zip(rows[f"{col}_file"], rows["c_file"], strict=True)]
        return statistics.median(per_run), per_run

    def verdict(value: float, per_run: list[float], target: float, unit: str) -> str:
        return (f"{'yes' if value <= target else 'no'}: {value:.2f}{unit} "
                f"(per run {min(per_run):.2f}–{max(per_run):.2f})")

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t_add, t_ratio = TARGETS["added_p50_ms"], TARGETS["file_ratio"]
    table = [
        "| row | browser → browser (stemflow.js, Chromium) | WebSocket client → client (the gateway pair) "
        "| stemflow.client → client | target | met, browsers | met, gateway pair |",
        "|---|---:|---:|---:|---|---|---|",
        f"| one-way latency p50, 1 KB text (ms) | {med(rows['b_p50'], '{:.2f}')} "
        f"| {med(rows['w_p50'], '{:.2f}')} "
        f"| {med(rows['c_p50'], '{:.2f}')} | adds ≤ {t_add:.0f} ms to the client "
        f"| {verdict(*added('b'), t_add, ' ms added')} | {verdict(*added('w'), t_add, ' ms added')} |",
        f"| one-way latency p99, 1 KB text (ms) | {med(rows['b_p99'], '{:.2f}')} "
        f"| {med(rows['w_p99'], '{:.2f}')} "
        f"| {med(rows['c_p99'], '{:.2f}')} |  |  |  |",
        f"| 10 MB file, sender to receiver (s) | {med(rows['b_file'], '{:.3f}')} "
        f"| {med(rows['w_file'], '{:.3f}')} "
        f"| {med(rows['c_file'], '{:.3f}')} | ≤ {t_ratio}× the client "
        f"| {verdict(*ratio('b'), t_ratio, '×')} | {verdict(*ratio('w'), t_ratio, '×')} |",
        f"| the same, browsers with `http: false` (WebSocket fragments both ends, as before) (s) "
        f"| {med(rows['bw_file'], '{:.3f}')} |  |  | reference | {ratio('bw')[0]:.2f}× "
        f"(per run {min(ratio('bw')[1]):.2f}–{max(ratio('bw')[1]):.2f}) |  |",
        f"| round trip to the gateway, PING/PONG, p50 (ms) | {med(rows['b_ping'], '{:.2f}')} "
        f"| {med(rows['w_ping'], '{:.2f}')} |  | reference |  |  |",
        f"| Chromium alone: 10 MB into its WebSocket, {FRAGMENT_BYTES >> 10} KiB messages (s) "
        f"| {med(rows['raw_send'], '{:.3f}')} |  |  | reference |  |  |",
    ]
    if sw is not None:
        table += [
            f"| {args.clients} WebSocket clients on one gateway, {args.rooms} rooms, 1 KB each per second: "
            f"delivery p50 (ms) |  | {med(sw['p50_ms'], '{:.1f}')} |  |  |  |  |",
            f"| the same, delivery p99 (ms) |  | {med(sw['p99_ms'], '{:.1f}')} |  "
            f"| ≤ {TARGETS['swarm_p99_ms']:.0f} ms |  "
            f"| {'yes' if statistics.median(sw['p99_ms']) <= TARGETS['swarm_p99_ms'] else 'no'} (median) |",
            f"| the same: gateway RSS, peak (MB) |  | {max(sw['rss_mb']):.0f} |  | reported |  |  |",
        ]
    swarm_text = (
        f"Swarm: {args.clients} scripted clients (two Python worker processes, the gateway format and "
        f"stemflow.js's envelope) on gateway a, each in one of {args.rooms} rooms "
        f"({args.clients // args.rooms} members), "
        f"each publishing 1 KB once a second at a random phase, measured {args.seconds:.0f} s after "
        f"{SWARM_WARMUP_S:.0f} s of warm-up, {args.swarm_reps} runs (median, lowest–highest): "
        f"{statistics.median(sw['deliveries']):,.0f} deliveries of {statistics.median(sw['sent']):,.0f} "
        "messages sent per run; the "
        "publisher's wall-clock stamp against the member's receipt (one machine, one clock). "
        if sw is not None else "Swarm: not run (`--swarm-reps 0`). ")
    section = "\n".join([
        "## Web gateway", "",
        f"`benchmarks/gateway.py`, {date}, {platform.node()} ({os.cpu_count()} cores, {cpu}, kernel "
        f"{platform.release()}, Python {platform.python_version()}, Chromium headless); loopback; "
        f"median of {args.reps} runs (lowest–highest), browser and client rows interleaved in one run; "
        f"load average {load_before:.1f} before, {load_after:.1f} after. Path: page A → gateway a → "
        "relay a → relay b → gateway b → page B (two Chromium processes, stemflow.js); the client rows use "
        "`stemflow.client` connections at relay a and relay b, the same relays; the middle column "
        "scripted Python WebSocket clients (aiohttp, the gateway format) on the same two gateways, which "
        "is the gateway pair's own cost without a browser's. Latency: an echo, "
        f"{ECHOES} round trips per run after {WARMUP} discarded, one-way = round trip / 2. File: "
        f"{FILE_BYTES / 1e6:.0f} MB, from the start of `publish` at the sender to the receiver's last "
        f"byte, relayed in {FRAGMENT_BYTES >> 10} KiB messages in every column (the client on a "
        "reliable stream); the browsers by HTTP to and from the gateways (stemflow.js's default: page A "
        "POSTs the body to gateway a, which publishes the fragments; gateway b announces the message on "
        "page B's WebSocket and streams it to its GET, docs/gateway.md \"Files\"), and in a row of their "
        "own in WebSocket fragments both ends (`http: false`, the earlier path), each run of the two "
        "one after the other; the scripted clients in WebSocket fragments, each acknowledged. "
        + swarm_text + "The 2 cores "
        "are shared by the relays, the controller, both gateways, and the browsers or swarm workers.",
        "", *table, "",
        "Reading the table. The gateway pair's own cost is the middle column against the right one: "
        f"{added('w')[0]:.2f} ms per text message at p50, and {ratio('w')[0]:.2f}× the client's time "
        "for a 10 MB file, with the scripted clients' own WebSocket work (framing, masking, in Python) "
        "counted in it. A PING/PONG round trip to the "
        f"gateway takes {statistics.median(rows['b_ping']):.2f} ms from a page against "
        f"{statistics.median(rows['w_ping']):.2f} ms from a Python client, and a text message crosses "
        "two such page-to-gateway legs. For files, the HTTP path takes "
        f"{statistics.median(rows['b_file']):.3f} s where the browsers' WebSocket fragments take "
        f"{statistics.median(rows['bw_file']):.3f} s in the same run "
        f"({statistics.median(rows['bw_file']) / statistics.median(rows['b_file']):.1f}× as long); "
        f"pushing 10 MB into a page's WebSocket alone takes {statistics.median(rows['raw_send']):.3f} s.",
        ""])
    print(section)
    if args.write:
        write_section("## Web gateway", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
