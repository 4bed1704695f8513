"""`stemflow pub`, `sub`, `request` and `reply`: the client for people, one message per line.

Owns argument parsing and line-oriented I/O (like `nats pub/sub` or `redis-cli`); everything on
the wire is `stemflow.client`'s. The relay comes from `--relay` or, like `NATS_URL` for `nats`,
from the STEMFLOW_RELAY environment variable. What the client would refuse (a message above the
frame limit, an address without a port) is refused here first, as one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys

from stemflow.cli_args import ArgumentParser, add_version, address, int_between
from stemflow.client import MAX_HISTORY, REQUEST_TIMEOUT_S, Client, ClientError, connect
from stemflow.headers import HeaderError, encode_headers
from stemflow.protocol import MAX_PAYLOAD_BYTES
from stemflow.security.tls import client_context
from stemflow.subjects import PatternError, is_pattern, validate_pattern

RELAY_ENV = "STEMFLOW_RELAY"
"""Environment variable with the relay address(es), comma-separated, used when --relay is not given."""
TLS_CA_ENV = "STEMFLOW_TLS_CA"
TOKEN_ENV = "STEMFLOW_TOKEN"
"""Environment variable with the client's token: there it stays out of `ps` and shell history."""
USAGE_ERROR = 2


class MessageTooLarge(ValueError):
    """A message the relay would refuse: above `protocol.MAX_PAYLOAD_BYTES`."""

    def __init__(self, size: int, where: str):
        super().__init__(f"{where} is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes "
                         f"({MAX_PAYLOAD_BYTES // 2**20} MiB) per message: split it")


def parse_args(argv: list[str]) -> argparse.Namespace:
    cmd, rest = argv[0], argv[1:]
    p = ArgumentParser(
        prog=f"stemflow {cmd}",
        description=DESCRIPTIONS[cmd],
        epilog=f"The relay address defaults to ${RELAY_ENV} (comma-separated for several).")
    add_version(p)
    p.add_argument("--relay", action="append", type=address, metavar="HOST:PORT",
                   help=f"relay address; repeat to let the client pick the lowest-RTT one "
                        f"(default: ${RELAY_ENV})")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"credential for relays that check tokens ('stemflow token issue'; "
                        f"default: ${TOKEN_ENV})")
    p.add_argument("--tls-ca", metavar="FILE", default=os.environ.get(TLS_CA_ENV),
                   help=f"speak TLS to the relay, trusting this CA certificate (the overlay's "
                        f"ca.pem; default: ${TLS_CA_ENV}, else plain TCP)")
    if cmd in ("sub", "reply"):
        p.add_argument("topic", help="topic name, or a pattern of them as NATS writes it: '*' is "
                                     "one token, a final '>' one or more (chat.*, video.>)")
    else:
        p.add_argument("topic", help="topic name (no wildcards: one publishes on a topic)")
    if cmd == "pub":
        p.add_argument("message", nargs="?", default="-",
                       help="the message, or '-' (default) for one message per line of stdin")
        p.add_argument("--delay-sensitive", action="store_true", help="queue ahead of bulk traffic")
    elif cmd == "request":
        p.add_argument("message", help="the request")
        p.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_S, metavar="SECONDS",
                       help=f"give up after this long (default: {REQUEST_TIMEOUT_S:g})")
    elif cmd == "reply":
        p.add_argument("message", help="the answer to every request")
        p.add_argument("--count", type=int, default=0, metavar="N",
                       help="exit after N requests (default: 0, never)")
    else:
        p.add_argument("--count", type=int, default=0, metavar="N",
                       help="exit after N messages (default: 0, never)")
        p.add_argument("--headers", action="store_true",
                       help="print each message's headers (Name: value) before it")
        p.add_argument("--show-topic", action="store_true",
                       help="print each message as TOPIC<tab>MESSAGE (the default for a pattern)")
        p.add_argument("--history", type=int_between(0, MAX_HISTORY), default=0, metavar="N",
                       help="first the topic's last N messages, as relays started with --history "
                            "keep them (default: 0, only new ones)")
    if cmd in ("pub", "request", "reply"):
        p.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                       help="a header to send with the message; repeat for several")
    args = p.parse_args(rest)
    args.headers_out = {}
    for h in getattr(args, "header", []):
        name, sep, value = h.partition(":")
        if not sep:
            p.error(f"--header {h!r}: write NAME:VALUE")
        args.headers_out[name.strip()] = value.strip()
    try:
        encode_headers(args.headers_out)
    except HeaderError as e:
        p.error(f"--header: {e}")
    if not args.relay:
        env = [a.strip() for a in os.environ.get(RELAY_ENV, "").split(",") if a.strip()]
        if not env:
            p.error(f"no relay: give --relay HOST:PORT or set {RELAY_ENV}")
        try:
            args.relay = [address(a) for a in env]
        except argparse.ArgumentTypeError as e:
            p.error(f"{RELAY_ENV}: {e}")
    args.cmd = cmd
    if is_pattern(args.topic):
        if cmd in ("pub", "request"):
            p.error(f"cannot {'publish' if cmd == 'pub' else 'send a request'} on "
                    f"{args.topic!r}: '*' and '>' are wildcards, for 'sub' and 'reply' only")
        try:
            validate_pattern(args.topic)
        except PatternError as e:
            p.error(str(e))
        if getattr(args, "history", 0):
            p.error(f"--history: relays keep the history of a topic, not of a pattern "
                    f"({args.topic!r})")
    try:
        args.tls = client_context(args.tls_ca) if args.tls_ca else None
    except (OSError, ssl.SSLError) as e:
        p.error(f"--tls-ca {args.tls_ca}: {e.strerror or e}")
    if cmd == "pub" and args.message != "-" and len(args.message.encode()) > MAX_PAYLOAD_BYTES:
        p.error(str(MessageTooLarge(len(args.message.encode()), "the message")))
    if cmd in ("sub", "reply") and args.count < 0:
        p.error(f"--count {args.count}: must be 0 (never exit) or more")
    return args


async def pub(args: argparse.Namespace, client: Client) -> int:
    if args.message != "-":
        if not await client.publish(args.topic, args.message.encode(),
                                    delay_sensitive=args.delay_sensitive,
                                    headers=args.headers_out):
            print(f"stemflow pub: nobody subscribes to {args.topic!r}: the message was dropped",
                  file=sys.stderr)
            return 1
        return 0
    loop = asyncio.get_running_loop()
    n = dropped = 0
    while line := await loop.run_in_executor(None, sys.stdin.buffer.readline):
        n += 1
        data = line.rstrip(b"\n")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise MessageTooLarge(len(data), f"line {n} of stdin")
        dropped += not await client.publish(args.topic, data, delay_sensitive=args.delay_sensitive,
                                            headers=args.headers_out)
    if dropped:
        print(f"stemflow pub: nobody subscribed to {args.topic!r}: {dropped} of {n} messages "
              "were dropped", file=sys.stderr)
        return 1
    return 0


async def sub(args: argparse.Namespace, client: Client) -> int:
    n = 0
    out = sys.stdout.buffer
    show_topic = args.show_topic or is_pattern(args.topic)
    async for msg in await client.subscribe(args.topic, history=args.history):
        if args.headers and msg.headers:
            out.write("".join(f"{k}: {v}\n" for k, v in msg.headers.items()).encode())
        if show_topic:
            out.write(msg.topic.encode() + b"\t")
        out.write(msg.data + b"\n")
        out.flush()
        n += 1
        if args.count and n >= args.count:
            return 0
    print(f"stemflow sub: {client._error}", file=sys.stderr)
    return 1


async def request(args: argparse.Namespace, client: Client) -> int:
    try:
        msg = await client.request(args.topic, args.message.encode(), timeout_s=args.timeout,
                                   headers=args.headers_out)
    except TimeoutError:
        print(f"stemflow request: no reply on {args.topic!r} within {args.timeout:g} s",
              file=sys.stderr)
        return 1
    sys.stdout.buffer.write(msg.data + b"\n")
    return 0


async def reply(args: argparse.Namespace, client: Client) -> int:
    n = 0
    async for msg in await client.subscribe(args.topic):
        if msg.reply is None:
            continue  # a plain publish on the topic asks for nothing
        await client.respond(msg, args.message.encode(), headers=args.headers_out)
        n += 1
        if args.count and n >= args.count:
            return 0
    print(f"stemflow reply: {client._error}", file=sys.stderr)
    return 1


COMMANDS = {"pub": pub, "sub": sub, "request": request, "reply": reply}
DESCRIPTIONS = {
    "pub": "Publish messages to a topic.",
    "sub": "Subscribe to a topic and print each message on a line of its own.",
    "request": "Send a request on a topic and print the first reply (like 'nats request').",
    "reply": "Answer every request on a topic with MESSAGE (like 'nats reply')."}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print("usage: stemflow pub|sub|request|reply [--relay HOST:PORT] TOPIC ...", file=sys.stderr)
        return USAGE_ERROR
    args = parse_args(argv)

    async def run() -> int:
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        async with await connect(args.relay, token=args.token, tls=args.tls) as client:
            return await COMMANDS[args.cmd](args, client)

    try:
        return asyncio.run(run())
    except MessageTooLarge as e:
        print(f"stemflow {args.cmd}: {e}", file=sys.stderr)
        return USAGE_ERROR
    except (ClientError, OSError, TimeoutError) as e:
        print(f"stemflow {args.cmd}: {e}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 130
    finally:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()
