"""`stemflow relay`: parse the command line, run one relay until SIGINT or SIGTERM.

Owns the relay's command line: every flag is checked here (addresses, periods, counts), so a
mistake is one line and exit status 2, and a socket that cannot be bound is one line and exit
status 1. An unreachable controller is not a mistake: the relay keeps retrying and logs each try.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from stemflow.cli_args import (
    ArgumentParser,
    add_log_level,
    add_version,
    address,
    bind_error,
    int_between,
    seconds_at_least,
)
from stemflow.eventloop import DEFAULT_LOOP, LOOPS, resolve, run
from stemflow.relay.history import HistoryPolicy
from stemflow.relay.server import REPORT_INTERVAL_S, Relay, run_relay
from stemflow.relay.slow import SLOW_SUBSCRIBER_DEADLINE_S, SlowSubscriberPolicy
from stemflow.relay.sockets import check_congestion_control
from stemflow.security.exposure import exposure_refusal
from stemflow.security.limits import HELLO_TIMEOUT_S, MAX_CONNECTIONS, ConnectionLimits
from stemflow.security.permissions import Authenticator
from stemflow.security.tls import MemberTls
from stemflow.security.tokens import load_verify_key

MIN_INTERVAL_S = 0.1
"""Shortest measurement-report period: ten reports a second is more than the controller can
re-plan on; `--interval 0` spun a relay at 100% of a core doing nothing else."""
MIN_HELLO_TIMEOUT_S = 0.1
"""Below a tenth of a second a HELLO on a wide-area path would arrive too late."""
MAX_CONNECTIONS_CAP = 1 << 20
"""The kernel's default ceiling on open files per process (fs.nr_open): a larger cap means nothing."""
MAX_PARALLEL = 256
"""Same bound as a scenario's `relay.parallel`: more connections per peer only add kernel state."""


def _peer(text: str) -> str:
    dc, eq, addr = text.partition("=")
    if not eq or not dc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected DC=HOST:PORT")
    address(addr)
    return text


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="stemflow relay", description="Run a Stemflow relay.")
    add_version(p)
    p.add_argument("--dc", required=True, help="this relay's datacenter name (one relay per DC)")
    p.add_argument("--listen", required=True, type=address, metavar="HOST:PORT",
                   help="address for clients and peers (port 0: any free port)")
    p.add_argument("--controller", required=True, type=address, metavar="HOST:PORT",
                   help="the controller's address (retried until it answers)")
    p.add_argument("--parallel", type=int_between(1, MAX_PARALLEL), default=4, metavar="P",
                   help="TCP connections per peer relay (default: %(default)s)")
    p.add_argument("--interval", type=seconds_at_least(MIN_INTERVAL_S, "a shorter period only burns CPU"),
                   default=REPORT_INTERVAL_S, metavar="SECONDS",
                   help="seconds between measurement reports (default: %(default)s)")
    p.add_argument("--advertise", type=address, metavar="HOST:PORT",
                   help="address peers should dial (default: the bound address)")
    p.add_argument("--peers", nargs="*", default=[], type=_peer, metavar="DC=HOST:PORT",
                   help="peer addresses known up front (default: none; the controller's table adds the rest)")
    p.add_argument("--cc", metavar="NAME",
                   help="TCP congestion control of every connection (cubic, reno, bbr; "
                        "default: the host's)")
    p.add_argument("--slow-subscriber", action="append", default=[], metavar="[PATTERN=]POLICY",
                   help="what a reliable topic does about a subscriber that does not keep up: "
                        "'disconnect' it after the deadline (default) or 'block' the topic at "
                        "its pace; PATTERN (a NATS-style subject, e.g. 'logs.>') limits the rule to "
                        "matching topics; repeatable, the first match wins")
    p.add_argument("--slow-subscriber-deadline", metavar="SECONDS",
                   type=seconds_at_least(0.1, "shorter than a scheduler hiccup"),
                   default=SLOW_SUBSCRIBER_DEADLINE_S,
                   help="how long a 'disconnect' topic waits for a full subscriber queue "
                        "(default: %(default)s)")
    p.add_argument("--history", action="append", default=[], metavar="PATTERN=COUNT[/SECONDS]",
                   help="keep the last COUNT messages (none older than SECONDS) of topics matching "
                        "PATTERN (a NATS-style subject; '>' is every topic) for subscribers that ask "
                        "for history; repeatable, the first match wins (default: no history)")
    p.add_argument("--no-acks", dest="acks", action="store_false",
                   help="no end-to-end acknowledgements of reliable sessions: publishers keep "
                        "nothing for resending and a relay that dies loses what it held (for "
                        "measuring what acknowledgements cost; default: on)")
    p.add_argument("--hello-timeout", default=HELLO_TIMEOUT_S, metavar="SECONDS",
                   type=seconds_at_least(MIN_HELLO_TIMEOUT_S, "a HELLO needs a round trip or two"),
                   help="close a connection that has not said HELLO this long after it opened "
                        "(default: %(default)s)")
    p.add_argument("--max-connections", type=int_between(1, MAX_CONNECTIONS_CAP),
                   default=MAX_CONNECTIONS, metavar="N",
                   help="connections open at once; more are refused (default: %(default)s)")
    p.add_argument("--auth-key", metavar="FILE",
                   help="check clients' tokens against this verify key ('stemflow keys init' "
                        "makes it; default: no client authentication)")
    p.add_argument("--revoked", metavar="FILE", type=Path,
                   help="token ids (one per line) refused from now on, their connections closed; "
                        "re-read when it changes (default: none)")
    p.add_argument("--certs", metavar="DIR",
                   help="the overlay's CA directory with this relay's certificate ('stemflow certs "
                        "relay DC'): TLS on every connection, mutual with the controller and peer "
                        "relays (default: plain TCP)")
    p.add_argument("--insecure", action="store_true",
                   help="listen beyond loopback without --certs and --auth-key (anyone who can reach "
                        "the port may publish, subscribe and pose as a peer)")
    p.add_argument("--loop", choices=LOOPS, default=DEFAULT_LOOP,
                   help="event loop (default: %(default)s; auto: uvloop where installed)")
    add_log_level(p)
    args = p.parse_args(argv)
    try:
        resolve(args.loop)
    except ValueError as e:
        p.error(str(e))
    if args.cc:
        check_congestion_control(args.cc)
    try:
        args.slow = SlowSubscriberPolicy.parse(args.slow_subscriber, args.slow_subscriber_deadline)
    except ValueError as e:
        p.error(str(e))
    try:
        args.history = HistoryPolicy.parse(args.history)
    except ValueError as e:
        p.error(f"--history: {e}")
    try:
        args.auth = (Authenticator(load_verify_key(args.auth_key), revocations=args.revoked)
                     if args.auth_key else None)
    except ValueError as e:
        p.error(f"--auth-key: {e}")
    try:
        args.tls = MemberTls(args.certs, args.dc, require_client_cert=False) if args.certs else None
    except ValueError as e:
        p.error(f"--certs: {e}")
    missing = [f for f, given in (("--certs", args.certs), ("--auth-key", args.auth_key)) if not given]
    refusal = None if args.insecure else exposure_refusal(args.listen, "--listen", missing)
    if refusal:
        p.error(refusal)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s relay {args.dc} %(levelname)s %(message)s")
    relay = Relay(args.dc, args.listen, args.controller, args.parallel, args.interval,
                  args.advertise, dict(spec.split("=", 1) for spec in args.peers), args.cc,
                  args.slow, ConnectionLimits(args.hello_timeout, args.max_connections),
                  args.auth, args.tls, args.history, args.acks)

    async def serve() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await run_relay(relay)

    try:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            run(serve(), args.loop)
    except OSError as e:  # raised by the listening socket: the relay never started
        print(f"stemflow relay: {bind_error('clients and peers', args.listen, e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
