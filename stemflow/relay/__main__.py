"""`stemflow relay`: parse the command line, run one relay until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from stemflow.eventloop import DEFAULT_LOOP, LOOPS, resolve, run
from stemflow.relay.server import REPORT_INTERVAL_S, Relay, run_relay
from stemflow.relay.sockets import check_congestion_control


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="stemflow relay", description="Run a Stemflow relay.")
    p.add_argument("--dc", required=True, help="this relay's datacenter name (one relay per DC)")
    p.add_argument("--listen", required=True, help="HOST:PORT for clients and peers (port 0: any)")
    p.add_argument("--controller", required=True, help="the controller's HOST:PORT")
    p.add_argument("--parallel", type=int, default=4, help="TCP connections per peer relay (P)")
    p.add_argument("--interval", type=float, default=REPORT_INTERVAL_S,
                   help="seconds between measurement reports")
    p.add_argument("--advertise", help="HOST:PORT peers should dial (default: the bound address)")
    p.add_argument("--peers", nargs="*", default=[], metavar="DC=HOST:PORT",
                   help="peer addresses known up front (the controller's table adds the rest)")
    p.add_argument("--cc", metavar="NAME",
                   help="TCP congestion control of every connection (cubic, reno, bbr; "
                        "default: the host's)")
    p.add_argument("--loop", choices=LOOPS, default=DEFAULT_LOOP,
                   help=f"event loop (default {DEFAULT_LOOP}; auto: uvloop where installed)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    try:
        resolve(args.loop)
    except ValueError as e:
        p.error(str(e))
    if args.parallel < 1:
        p.error("--parallel must be at least 1")
    if args.cc:
        check_congestion_control(args.cc)
    for spec in args.peers:
        if "=" not in spec:
            p.error(f"--peers {spec!r}: expected DC=HOST:PORT")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s relay {args.dc} %(levelname)s %(message)s")
    relay = Relay(args.dc, args.listen, args.controller, args.parallel, args.interval,
                  args.advertise, dict(spec.split("=", 1) for spec in args.peers), args.cc)

    async def serve() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await run_relay(relay)

    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        run(serve(), args.loop)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
