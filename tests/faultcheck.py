"""A seeded, Jepsen-style fault run against real relays on loopback, and its checker (issue 15).

`run(tmp, seed, faults, ...)` starts four relays (publishing and subscribing relays a and b,
transit relays m1 and m2; reliable sessions go a -> m1 -> b and b -> m1 -> a while m1 lives,
else through m2, else direct), three publishers and five subscribers, each client through its
own TCP proxy to its relay, and applies a schedule drawn from the seed: kill -9 a transit relay
(restarted by a later fault), cut a publisher's connection, cut a subscriber's connection. The
checker then asks that every acknowledged message reached every subscriber exactly once, in its
publisher's order. `tests/test_exactly_once_random.py` runs one seed, briefly, in CI;
`benchmarks/exactly_once.py` runs more seeds, longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from relaynet import Overlay

from stemflow.client import connect

TOPIC = "jepsen"
PUBLISHERS = (("p0", "a"), ("p1", "a"), ("p2", "b"))
SUBSCRIBERS = (("s0", "a"), ("s1", "a"), ("s2", "b"), ("s3", "b"), ("s4", "b"))
EVERY_S = 0.01
"""Each publisher sends a numbered message this often (300 messages/s in all)."""


class Proxy:
    """A TCP relay of bytes to `upstream` whose connections `drop()` cuts (a network blink)."""

    def __init__(self, upstream: str):
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self.pairs.append((writer, up_w))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()
        with contextlib.suppress(asyncio.CancelledError):  # the run ended: the loop closes
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def drop(self) -> None:
        for down, up in self.pairs:
            down.transport.abort()
            up.transport.abort()
        self.pairs = []

    def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # "kill", "restart", "cut-publisher", "cut-subscriber"
    target: str


def schedule(seed: int, faults: int, duration_s: float) -> list[Fault]:
    """`faults` faults at seeded times within `duration_s` (the last second left quiet)."""
    rng = random.Random(seed)
    times = sorted(rng.uniform(0.5, duration_s - 1.0) for _ in range(faults))
    dead: list[str] = []
    out = []
    for t in times:
        kinds = ["cut-publisher", "cut-subscriber"]
        kinds += ["kill"] if len(dead) < 2 else []
        kinds += ["restart"] if dead else []
        kind = rng.choice(kinds)
        if kind == "kill":
            target = rng.choice([m for m in ("m1", "m2") if m not in dead])
            dead.append(target)
        elif kind == "restart":
            target = dead.pop(0)
        else:
            target = rng.choice(PUBLISHERS if kind == "cut-publisher" else SUBSCRIBERS)[0]
        out.append(Fault(round(t, 3), kind, target))
    return out


@dataclass
class Outcome:
    faults: list[Fault]
    sent: dict[str, int]
    received: dict[str, dict[str, list[int]]]
    """Per subscriber, per publisher, the counters in arrival order."""
    problems: list[str] = field(default_factory=list)
    resume_gaps: int = 0


def check(sent: dict[str, int], received: dict[str, dict[str, list[int]]]) -> list[str]:
    """Every message of every publisher at every subscriber, once, in order (all were
    acknowledged: the run flushes before it checks)."""
    problems = []
    for sub, per_pub in received.items():
        for pub, n in sent.items():
            got = per_pub.get(pub, [])
            if got != list(range(n)):
                dup = len(got) - len(set(got))
                missing = sorted(set(range(n)) - set(got))
                problems.append(f"{sub} from {pub}: {len(got)} of {n}, {dup} duplicates, "
                                f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
                                f"in order: {got == sorted(got)}")
    return problems


async def clients(o: Overlay) -> tuple[dict, dict, dict, dict]:
    """Every publisher and subscriber connected through its own proxy, reconnecting; the topic
    planned for both publishing relays. Returns proxies, (client, subscription) per subscriber,
    clients and streams per publisher."""
    proxies = {name: Proxy(o.addr[dc]) for name, dc in (*PUBLISHERS, *SUBSCRIBERS)}
    via = {name: await p.start() for name, p in proxies.items()}
    subs = {}
    for name, _ in SUBSCRIBERS:
        c = await connect(via[name], reconnect=True)
        subs[name] = (c, await c.subscribe(TOPIC))
    pubs = {name: await connect(via[name], reconnect=True) for name, _ in PUBLISHERS}
    streams = {name: c.open_stream(TOPIC) for name, c in pubs.items()}
    for s in streams.values():
        await s.drain()
    await asyncio.to_thread(o.wait_status, lambda st: sum(
        x["topic"] == TOPIC and bool(x["rate_mbps"]) for x in st["sessions"]) == 2)
    await asyncio.sleep(0.2)
    return proxies, subs, pubs, streams


async def _run(o: Overlay, plan: list[Fault], duration_s: float) -> Outcome:
    loop = asyncio.get_running_loop()
    proxies, subs, pubs, streams = await clients(o)
    received: dict[str, dict[str, list[int]]] = {name: {} for name, _ in SUBSCRIBERS}

    async def receive(name: str, sub) -> None:
        async for m in sub:
            received[name].setdefault(f"p{m.data[0]}", []).append(int.from_bytes(m.data[1:5], "big"))

    rx = [asyncio.create_task(receive(n, s)) for n, (_, s) in subs.items()]
    sent = dict.fromkeys(pubs, 0)

    async def publish(name: str) -> None:
        index = int(name[1:])
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration_s:
            await streams[name].write(bytes([index]) + sent[name].to_bytes(4, "big") + bytes(100))
            sent[name] += 1
            await asyncio.sleep(EVERY_S)

    def apply(f: Fault) -> None:
        if f.kind == "kill":
            o.kill(f.target)
        elif f.kind == "restart":
            o.start_relay(f.target)
        else:
            loop.call_soon_threadsafe(proxies[f.target].drop)

    async def inject() -> None:
        t0 = time.monotonic()
        for f in plan:
            await asyncio.sleep(max(0.0, t0 + f.at_s - time.monotonic()))
            await loop.run_in_executor(None, apply, f)

    await asyncio.gather(inject(), *(publish(n) for n in pubs))
    for c in pubs.values():
        await asyncio.wait_for(c.flush(), 20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and check(sent, received):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # duplicates, if any, would come now
    for t in rx:
        t.cancel()
    out = Outcome(plan, sent, received, check(sent, received),
                  sum(c.resume_gaps for c, _ in subs.values()))
    for c in [*pubs.values(), *(c for c, _ in subs.values())]:
        await c.close()
    for p in proxies.values():
        p.close()
    return out


def run(tmp: Path, seed: int, faults: int, duration_s: float) -> Outcome:
    """One seeded run; the relays are killed by PID whatever happens."""
    plan = schedule(seed, faults, duration_s)
    o = Overlay(tmp, ["a", "b", "m1", "m2"], "via_middle", relay_args=("--history", f"{TOPIC}=10000"))
    try:
        out = asyncio.run(_run(o, plan, duration_s))
        if out.problems:
            out.problems.append(o.logs())
        return out
    finally:
        o.close()
