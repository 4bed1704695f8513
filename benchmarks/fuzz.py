"""Fuzzing running processes: junk frames at a relay and a controller, junk WebSocket messages at
a gateway, all on loopback, from a fixed seed. Reports crashes (a process exited), hangs (a
process stopped answering its liveness probe within HANG_S) and RSS growth per process.

Inputs are frames built like the fuzz tests' (`tests/test_fuzz.py`): known and unknown types,
payloads that are JSON junk, deep nesting, topics, or random bytes, after a valid or an invalid
HELLO / REGISTER; for the gateway, browser messages of every op with random bodies. A server
closes a connection on its first bad input, so inputs travel in batches per connection and the
harness reconnects. After every `PROBE_EVERY` batches each process must answer: the relay a PING,
the controller and the gateway a GET /status.

An input is a frame or message that reached a server's handlers (the junk one that closes a
connection counts; what follows it on that connection does not). The run goes on until
`--inputs` have.

Usage: python benchmarks/fuzz.py [--inputs 1000000] [--seed 16] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dataplane import PY, Procs, read_line
from docpage import write_section
from tqdm import tqdm

from stemflow.gateway import wire
from stemflow.protocol import HEADER, VERSION, FrameDecoder, FrameType, encode, encode_json, session_id

BATCH = 32
"""Inputs per connection: enough to get past HELLO and reach the handlers behind it."""
CONCURRENCY = 8
"""Connections fuzzing at once, per target: more only queues in the kernel on two cores."""
PROBE_EVERY = 50
HANG_S = 5.0
"""A probe unanswered this long is a hang: a loopback answer takes milliseconds even under load."""
KEYS = ["links", "interest", "peer", "rtt_ms", "min_rtt_ms", "loss", "delivered_mbps", "topic",
        "publishers", "subscribers", "priority", "max_rate_mbps", "counters", "dc", "address",
        "role", "token"]


def junk_json(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([None, True, -1, 0, 1e308, -1.5, "a", "", "b", "client", "peer", 2**70,
                           float("nan") if rng.random() < 0.1 else 3])
    if r < 0.7:
        return [junk_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): junk_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def junk_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(64))
    if kind == 1:
        return json.dumps(junk_json(rng)).encode()
    if kind == 2:
        n = rng.randrange(1, 3000)
        return b"[" * n + b"]" * n
    if kind == 3:
        return rng.choice(["t", "chat.a", "x" * 300, "", "news"]).encode()
    return json.dumps({"peer": rng.choice(["a", "b", "z"]), "rtt_ms": rng.uniform(-10, 10)}).encode()


def junk_frame(rng: random.Random) -> bytes:
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(1, 48))  # not a frame at all
    typ = rng.choice([int(t) for t in FrameType] + [0, 99, 255])
    payload = junk_payload(rng)
    session = session_id(payload.decode(errors="replace")) if rng.random() < 0.5 else rng.getrandbits(32)
    flags = rng.getrandbits(8) if rng.random() < 0.3 else 0
    return HEADER.pack(VERSION, typ, flags, 0, session, 7, rng.getrandbits(64), len(payload)) + payload


TOPICS = ["t", "chat.a", "news", "video.4k", "x" * 200]


def odd_frame(rng: random.Random, advertised: list[str]) -> bytes:
    """A frame a client may send whose fields are odd but not wrong: the relay must handle it
    without closing, so the inputs after it reach the handlers too."""
    topic = rng.choice(TOPICS)
    sid = session_id(topic)
    kind = rng.randrange(5)
    if kind == 0:
        advertised.append(topic)
        opts = json.dumps(junk_json(rng)).encode() if rng.random() < 0.5 else b""
        return encode(FrameType.ADVERTISE, topic.encode() + (b"\0" + opts if opts else b""), session=sid,
                      flags=rng.getrandbits(8) & 0x03)
    if kind == 1:
        return encode(rng.choice([FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.UNADVERTISE]),
                      topic.encode(), session=sid)
    if kind == 2 and advertised:
        t = rng.choice(advertised)
        return encode(FrameType.DATA, rng.randbytes(rng.randrange(200)), session=session_id(t),
                      seq=rng.getrandbits(rng.choice([4, 16, 64])), flags=rng.getrandbits(3),
                      origin=rng.getrandbits(32))
    return encode(FrameType.PING, rng.randbytes(rng.randrange(16)), seq=rng.getrandbits(64))


def relay_batch(rng: random.Random) -> tuple[bytes, int]:
    """A client connection's inputs: HELLO, odd frames, and a junk frame last (which the relay
    answers by closing). Returns the bytes and how many inputs reach the relay's handlers."""
    if rng.random() < 0.2:  # no or a strange HELLO: the relay closes at once
        hello = rng.choice([b"", encode_json(FrameType.HELLO, junk_json(rng)),
                            encode_json(FrameType.HELLO, {"role": "peer", "dc": "b"})])
        return hello + junk_frame(rng), 1
    advertised: list[str] = []
    frames = [odd_frame(rng, advertised) for _ in range(BATCH - 2)]
    return encode_json(FrameType.HELLO, {"role": "client"}) + b"".join(frames) + junk_frame(rng), BATCH


def controller_batch(rng: random.Random, i: int) -> tuple[bytes, int]:
    """A relay's control connection: REGISTER, junk reports (answered with ERROR frames, the
    connection kept), junk frames (the first closes it). Inputs handled: up to that frame."""
    first = rng.choice([encode_json(FrameType.REGISTER, {"dc": f"fz{i % 20}", "address": "127.0.0.1:1"}),
                        b""])
    if not first:
        return junk_frame(rng), 1
    reports = [encode(FrameType.REPORT, json.dumps(junk_json(rng)).encode()) for _ in range(BATCH - 2)]
    return first + b"".join(reports) + junk_frame(rng), BATCH


def gateway_batch(rng: random.Random) -> tuple[list[bytes], int]:
    """A browser's messages: HELLO, well-formed operations with random fields, junk last."""
    if rng.random() < 0.2:
        return [bytes([rng.choice([*list(wire.BrowserOp), 0, 200])]) + rng.randbytes(rng.randrange(40))], 1
    msgs = [wire.hello()]
    for _ in range(BATCH - 2):
        kind, topic = rng.randrange(4), rng.choice(TOPICS)
        if kind == 0:
            msgs.append(wire.subscribe(rng.getrandbits(32), topic, reliable=rng.random() < 0.5,
                                       history=rng.randrange(3)))
        elif kind == 1:
            msgs.append(wire.unsubscribe(rng.getrandbits(32)))
        elif kind == 2:
            msgs.append(wire.publish(rng.getrandbits(32), topic, rng.randbytes(rng.randrange(100)),
                                     reliable=rng.random() < 0.5, delay_sensitive=rng.random() < 0.5))
        else:
            msgs.append(wire.ping(rng.getrandbits(32)))
    op = rng.choice([*list(wire.BrowserOp), 0, 200])
    return [*msgs, bytes([op]) + rng.randbytes(rng.randrange(40))], BATCH


async def send_raw(addr: str, data: bytes) -> None:
    host, port = addr.rsplit(":", 1)
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), HANG_S)
        w.write(data)
        await w.drain()
        w.write_eof()
        await asyncio.wait_for(r.read(), HANG_S)  # the server answers and closes, or we give up
        w.close()
    except (OSError, TimeoutError):
        pass


async def send_ws(http, url: str, msgs: list[bytes]) -> None:
    import aiohttp

    try:
        async with http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=HANG_S)) as ws:
            for m in msgs:
                await ws.send_bytes(m)
            await ws.close()
    except (aiohttp.ClientError, OSError, TimeoutError, ConnectionResetError):
        pass


async def probe_relay(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), HANG_S)
        w.write(encode_json(FrameType.HELLO, {"role": "client"}) + encode(FrameType.PING, b"p", seq=1))
        d, deadline = FrameDecoder(), time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            frames = d.receive_data(await asyncio.wait_for(r.read(4096), HANG_S))
            if any(f.type is FrameType.PONG for f in frames):
                w.close()
                return True
    except (OSError, TimeoutError):
        pass
    return False


async def probe_http(url: str) -> bool:
    def get() -> bool:
        with urllib.request.urlopen(url, timeout=HANG_S) as r:
            return r.status == 200
    try:
        return await asyncio.to_thread(get)
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def fuzz(targets: dict[str, str], status: dict[str, str], pids: dict[str, int], inputs: int,
               seed: int) -> dict:
    """Throw `inputs` inputs at the three targets (addresses), probing them (and `status` URLs)."""
    import aiohttp

    rng = random.Random(seed)
    out = {name: {"inputs": 0, "crashes": 0, "hangs": 0} for name in targets}
    before = {name: rss_kb(pid) for name, pid in pids.items()}
    sem = asyncio.Semaphore(CONCURRENCY * len(targets))
    async with aiohttp.ClientSession() as http:
        async def one(name: str, i: int) -> None:
            async with sem:
                if name == "relay":
                    data, n = relay_batch(rng)
                    await send_raw(targets[name], data)
                elif name == "controller":
                    data, n = controller_batch(rng, i)
                    await send_raw(targets[name], data)
                else:
                    msgs, n = gateway_batch(rng)
                    await send_ws(http, targets[name], msgs)
                out[name]["inputs"] += n

        def handled() -> int:
            return sum(r["inputs"] for r in out.values())

        samples = [0.25, 0.5, 0.75]
        with tqdm(total=inputs, unit="input", file=sys.stderr) as bar:
            start = 0
            while handled() < inputs:
                before_round = handled()
                await asyncio.gather(*(one(name, start + k) for name in targets for k in range(PROBE_EVERY)))
                start += PROBE_EVERY
                bar.update(min(handled(), inputs) - min(before_round, inputs))
                alive = {"relay": await probe_relay(targets["relay"]),
                         "controller": await probe_http(status["controller"]),
                         "gateway": await probe_http(status["gateway"])}
                done = handled() / inputs
                while samples and done >= samples[0]:
                    mark = samples.pop(0)
                    for name, pid in pids.items():
                        out[name].setdefault("rss_mb", []).append((mark, rss_kb(pid) / 1024))
                for name, ok in alive.items():
                    if not ok:
                        exited = not Path(f"/proc/{pids[name]}").exists()
                        out[name]["crashes" if exited else "hangs"] += 1
                        if exited:
                            raise SystemExit(f"{name} exited under fuzzing: {out}")
    for name, pid in pids.items():
        out[name]["rss_before_mb"] = before[name] / 1024
        out[name]["rss_after_mb"] = rss_kb(pid) / 1024
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as t:
        procs = Procs(Path(t))
        try:
            ctl = procs.start("controller", [PY, "-m", "stemflow.cli", "controller",
                                             "--listen", "127.0.0.1:0",
                                             "--status", "127.0.0.1:0", "--log-level", "ERROR"])
            cport = read_line(ctl, "controller listening").rsplit(":", 1)[1]
            cstatus = read_line(ctl, "controller status").split()[-1]
            relay = procs.start("relay", [PY, "-m", "stemflow.cli", "relay", "--dc", "a", "--listen",
                                          "127.0.0.1:0", "--controller", f"127.0.0.1:{cport}",
                                          "--log-level", "ERROR"])
            raddr = read_line(relay, "relay a listening").split()[-1]
            gw = procs.start("gateway", [PY, "-m", "stemflow.cli", "gateway", "--relay", raddr,
                                         "--listen", "127.0.0.1:0", "--log-level", "ERROR"])
            gurl = read_line(gw, "gateway a listening").split()[-1]
            targets = {"relay": raddr, "controller": f"127.0.0.1:{cport}",
                       "gateway": gurl.replace("http://", "ws://") + "/ws"}
            status = {"controller": cstatus, "gateway": gurl + "/status"}
            result = asyncio.run(fuzz(targets, status, {"relay": relay.pid, "controller": ctl.pid,
                                                        "gateway": gw.pid}, args.inputs, args.seed))
        finally:
            procs.close()
    elapsed = time.monotonic() - t0
    text = render(result, args, elapsed)
    print(text)
    if args.write:
        write_section("## Fuzzing running processes", text)
    return 0


def render(result: dict, args: argparse.Namespace, elapsed_s: float) -> str:
    lines = ["## Fuzzing running processes", "",
             f"`benchmarks/fuzz.py --inputs {args.inputs} --seed {args.seed}`, "
             f"{datetime.date.today().isoformat()}, {platform.node()}: {os.cpu_count()} cores, shared; "
             f"{elapsed_s / 60:.1f} min. Batches of {BATCH} inputs per connection, {CONCURRENCY} "
             f"connections per target at once, liveness probed every {PROBE_EVERY} batches.", "",
             "| process | inputs | crashes | hangs | RSS (MB) at 0, ¼, ½, ¾ and all of the inputs |",
             "|---|---|---|---|---|"]
    for name in ("relay", "controller", "gateway"):
        r = result[name]
        rss = [r["rss_before_mb"], *(mb for _, mb in r.get("rss_mb", [])), r["rss_after_mb"]]
        lines.append(f"| {name} | {r['inputs']:,} | {r['crashes']} | {r['hangs']} | "
                     f"{' → '.join(f'{mb:.0f}' for mb in rss)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
