"""`stemflow gateway`: parse the command line, serve browsers until SIGINT or SIGTERM.

Prints `gateway DC listening http://HOST:PORT` once it accepts connections (tests and scripts
wait for that line), and a one-line error with a non-zero exit when its relay cannot be reached
or is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from stemflow.client import ClientError
from stemflow.protocol import split_address
from stemflow.security.exposure import exposure_refusal
from stemflow.security.permissions import Authenticator
from stemflow.security.tls import client_context
from stemflow.security.tokens import load_verify_key

GC_THRESHOLDS = (50_000, 20, 100)
"""Python's collector runs every 50 000 net allocations instead of 700, with older generations
collected as often as before relative to it. A gateway allocates a few objects per delivered
message; at 20 000 deliveries/s (1 000 browsers in rooms of 20) the default thresholds put
collections in the delivery tail: in benchmarks/gateway.py's swarm, p99 41-45 ms with the
defaults against 17-24 ms with these (two runs each, 2026-12-07)."""
APPS_DIR = Path(__file__).resolve().parents[2] / "apps"
"""The repository's web apps, served unless --static names another folder."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stemflow gateway",
        description="Serve the web apps and a WebSocket endpoint in front of one relay.")
    p.add_argument("--relay", required=True, help="this datacenter's relay, HOST:PORT")
    p.add_argument("--listen", required=True, help="HOST:PORT for browsers (port 0: any)")
    p.add_argument("--static", type=Path, default=APPS_DIR if APPS_DIR.is_dir() else None,
                   help="folder of web apps (default: the repository's apps/)")
    p.add_argument("--peer", action="append", default=[], metavar="WS_URL",
                   help="another datacenter's gateway (ws://HOST:PORT/ws), offered to browsers "
                        "as a choice; repeat for each")
    p.add_argument("--auth-key", metavar="FILE",
                   help="check browsers' tokens (in their HELLO) against this verify key "
                        "(default: no authentication)")
    p.add_argument("--revoked", metavar="FILE", type=Path,
                   help="token ids (one per line) refused from now on (re-read when it changes)")
    p.add_argument("--token", default=os.environ.get("STEMFLOW_TOKEN"),
                   help="the gateway's own token for a relay that checks tokens (default: "
                        "$STEMFLOW_TOKEN); it should allow every topic browsers may use")
    p.add_argument("--relay-ca", metavar="FILE",
                   help="speak TLS to the relay, trusting this CA certificate (default: plain TCP)")
    p.add_argument("--insecure", action="store_true",
                   help="listen beyond loopback without --auth-key (any browser may use any topic)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    try:
        split_address(args.listen)
        split_address(args.relay)
    except ValueError as e:
        p.error(str(e))
    if args.static is not None and not args.static.is_dir():
        p.error(f"--static {args.static}: not a folder")
    try:
        args.auth = (Authenticator(load_verify_key(args.auth_key), revocations=args.revoked)
                     if args.auth_key else None)
        args.relay_tls = client_context(args.relay_ca) if args.relay_ca else None
    except ValueError as e:
        p.error(f"--auth-key: {e}")
    except (OSError, ssl.SSLError) as e:
        p.error(f"--relay-ca {args.relay_ca}: {e.strerror or e}")
    missing = [] if args.auth_key or args.insecure else ["--auth-key"]
    refusal = exposure_refusal(args.listen, "--listen", missing)
    if refusal:
        p.error(refusal)
    return args


async def serve(args: argparse.Namespace) -> str | None:
    """Run until cancelled (None) or until the relay is lost (the reason)."""
    from aiohttp import web

    from stemflow.gateway.relaylink import RelayLink
    from stemflow.gateway.server import Gateway, make_app
    from stemflow.gateway.wire import CloseCode
    try:
        link = await RelayLink.open(args.relay, args.token, args.relay_tls)
    except (ClientError, OSError, TimeoutError) as e:
        return f"cannot reach relay {args.relay}: {e or type(e).__name__}"
    gw = Gateway(link, args.static, args.peer, args.auth)
    runner = web.AppRunner(make_app(gw), handle_signals=False, access_log=None)
    await runner.setup()
    host, port = split_address(args.listen)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await link.close()
        return f"cannot listen on {args.listen}: {e.strerror or e}"
    bound = runner.addresses[0]
    gc.freeze()  # what start-up made lives as long as the process: never scan it again
    gc.set_threshold(*GC_THRESHOLDS)
    print(f"gateway {link.dc} listening http://{bound[0]}:{bound[1]}", flush=True)
    tasks = [asyncio.create_task(gw.sweep()), asyncio.create_task(link.watch(gw.relay_lost))]
    try:
        return await gw.lost
    finally:
        for t in tasks:
            t.cancel()
        for s in list(gw.sessions):
            await s.close(CloseCode.TRY_AGAIN_LATER, "the gateway is shutting down")
        await runner.cleanup()
        await link.close()




def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("aiohttp") is None:
        print("stemflow gateway: needs aiohttp (pip install 'stemflow[gateway]')", file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s gateway %(levelname)s %(message)s")

    async def run() -> str | None:
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        return await serve(args)

    reason = None
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        reason = asyncio.run(run())
    if reason:
        print(f"stemflow gateway: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
