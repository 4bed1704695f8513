"""`stemflow pub` and `stemflow sub`: the client for people, one message per line.

Owns argument parsing and line-oriented I/O (like `nats pub/sub` or `redis-cli`); everything on
the wire is `stemflow.client`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from stemflow.client import ClientError, connect


def parse_args(argv: list[str]) -> argparse.Namespace:
    cmd, rest = argv[0], argv[1:]
    p = argparse.ArgumentParser(prog=f"stemflow {cmd}")
    p.add_argument("--relay", required=True, action="append",
                   help="relay HOST:PORT; repeat to let the client pick the lowest-RTT one")
    p.add_argument("topic")
    if cmd == "pub":
        p.add_argument("message", nargs="?", default="-",
                       help="the message, or '-' (default) for one message per line of stdin")
        p.add_argument("--delay-sensitive", action="store_true", help="queue ahead of bulk traffic")
    else:
        p.add_argument("--count", type=int, default=0, help="exit after N messages (0: never)")
    args = p.parse_args(rest)
    args.cmd = cmd
    return args


async def pub(args: argparse.Namespace) -> int:
    client = await connect(args.relay)
    try:
        if args.message != "-":
            await client.publish(args.topic, args.message.encode(), delay_sensitive=args.delay_sensitive)
            return 0
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.buffer.readline):
            await client.publish(args.topic, line.rstrip(b"\n"), delay_sensitive=args.delay_sensitive)
        return 0
    finally:
        await client.close()


async def sub(args: argparse.Namespace) -> int:
    client = await connect(args.relay)
    try:
        n = 0
        out = sys.stdout.buffer
        async for msg in await client.subscribe(args.topic):
            out.write(msg.data + b"\n")
            out.flush()
            n += 1
            if args.count and n >= args.count:
                return 0
        print(f"stemflow sub: {client._error}", file=sys.stderr)
        return 1
    finally:
        await client.close()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("pub", "sub"):
        print("usage: stemflow pub|sub --relay HOST:PORT TOPIC ...", file=sys.stderr)
        return 2
    args = parse_args(argv)

    async def run() -> int:
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        return await (pub(args) if args.cmd == "pub" else sub(args))

    try:
        return asyncio.run(run())
    except (ClientError, OSError, TimeoutError) as e:
        print(f"stemflow {args.cmd}: {e}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 130
    finally:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()
