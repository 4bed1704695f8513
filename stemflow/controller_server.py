"""`stemflow controller`: the asyncio shell around the sans-IO `Controller`.

Owns the sockets and the clock: relays connect over TCP and speak the protocol's control frames
(REGISTER, REPORT, HEARTBEAT in; TABLE out), which this module turns into controller events with
`time.monotonic()` as now; a timer feeds `Tick`s; `PushTable` actions go out as JSON tables with
the addresses of the live relays; plans are logged. A read-only HTTP endpoint serves the status
as JSON (`GET /status`). Every decision — liveness, re-planning, routing — is the `Controller`'s.

Two ways a relay goes: its control connection closes (the process exited: `RelayLeft` at once),
or it falls silent (hung host, partition: the controller's heartbeat timeout declares it dead).
Without `--scenario` the overlay starts empty and grows from registrations and link reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time

from stemflow import eventloop
from stemflow.cli_args import (
    ArgumentParser,
    add_log_level,
    add_version,
    address,
    bind_error,
    int_between,
    seconds_at_least,
)
from stemflow.controller import (
    HEARTBEAT_TIMEOUT_S,
    Action,
    Controller,
    Event,
    Heartbeat,
    PlanComputed,
    PlanFailed,
    Problem,
    PushTable,
    RelayDead,
    RelayJoined,
    RelayLeft,
    Report,
    Tick,
)
from stemflow.network import NetworkState
from stemflow.protocol import (
    FrameDecoder,
    FrameType,
    ProtocolError,
    encode,
    encode_json,
    split_address,
    table_to_json,
)
from stemflow.routing.registry import RoutingOptions, UnknownStrategy, get_strategy
from stemflow.scenario import ScenarioError, load_scenario
from stemflow.security.certs import CONTROLLER_NAME, Identity, identity
from stemflow.security.exposure import bearer_matches, exposure_refusal
from stemflow.security.limits import HELLO_TIMEOUT_S
from stemflow.security.membership import check_member
from stemflow.security.schema import registration
from stemflow.security.tls import MemberTls

log = logging.getLogger("stemflow.controller")

TICK_S = 0.1
"""Heartbeat checks and deferred re-plans run this often: a twentieth of the 2 s budget."""
STARTUP_GRACE_S = 1.0
"""A fresh controller listens this long before it pushes tables, so relays that survived its
restart re-register and report their interest first and never receive a half-empty table."""
DEFAULT_PARALLEL = 4
MAX_ERROR_BYTES = 1024
"""An ERROR frame's reason is for a log line; longer input echoed back would only amplify junk."""
STATUS_TOKEN_ENV = "STEMFLOW_STATUS_TOKEN"
MAX_HTTP_REQUEST_BYTES = 8192
"""The status endpoint reads one small GET; anything longer is not for it."""


class RelayConnection(asyncio.Protocol):
    """One relay's control connection."""

    def __init__(self, server: ControllerServer):
        self.server = server
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.dc = ""
        self.identity: Identity | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.identity = identity(transport.get_extra_info("peercert"))
        self.server.unregistered[self] = time.monotonic()

    def data_received(self, data: bytes) -> None:
        try:
            for f in self.decoder.receive_data(data):
                self._frame(f.type, f)
        except ProtocolError as e:
            log.warning("relay %s: protocol error: %s", self.dc or "?", e)
            self.send(encode(FrameType.ERROR, str(e).encode()[:MAX_ERROR_BYTES]))
            self.close()

    def _frame(self, typ: FrameType, f) -> None:
        if typ is FrameType.REGISTER:
            reg = registration(f.json())
            if self.server.members_only:
                check_member(self.identity, reg.dc)
            self.dc = reg.dc
            self.server.register(self, self.dc, reg.address)
        elif not self.dc:
            raise ProtocolError(f"{typ.name} before REGISTER")
        elif typ is FrameType.HEARTBEAT:
            self.server.feed(Heartbeat(self.dc))
        elif typ is FrameType.REPORT:
            self.server.feed(Report(self.dc, f.json()))
        else:
            raise ProtocolError(f"unexpected {typ.name} from a relay")

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.unregistered.pop(self, None)
        self.server.disconnected(self)


class ControllerServer:
    """Feeds the controller and carries out its actions."""

    def __init__(self, controller: Controller, grace_s: float = STARTUP_GRACE_S,
                 members_only: bool = False):
        self.ctl = controller
        self.grace_s = grace_s
        self.members_only = members_only
        """Relays must show a certificate of the overlay CA naming the relay they register as."""
        self.conns: dict[str, RelayConnection] = {}
        self.unregistered: dict[RelayConnection, float] = {}
        """Connections that have not registered yet, with when they opened: closed after the
        relays' hello timeout (`security.limits.HELLO_TIMEOUT_S`), as a relay closes silent ones."""
        self.started_s = time.monotonic()
        self._held: dict[str, bytes] | None = {}  # tables held back during the start-up grace

    # -- events in -----------------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        self._act(self.ctl.handle(event, time.monotonic()))

    def register(self, conn: RelayConnection, dc: str, address: str) -> None:
        self.unregistered.pop(conn, None)
        old = self.conns.get(dc)
        if old is not None and old is not conn:
            old.close()
        self.conns[dc] = conn
        log.info("relay %s registered at %s", dc, address)
        self.feed(RelayJoined(dc, address))

    def disconnected(self, conn: RelayConnection) -> None:
        if conn.dc and self.conns.get(conn.dc) is conn:
            del self.conns[conn.dc]
            log.info("relay %s disconnected", conn.dc)
            self.feed(RelayLeft(conn.dc))

    # -- actions out ---------------------------------------------------------------------------------

    def _act(self, actions: list[Action]) -> None:
        peers = {r: s.address for r, s in self.ctl.relays.items()}
        for a in actions:
            if isinstance(a, PushTable):
                data = encode_json(FrameType.TABLE, table_to_json(a.table, peers))
                if self._held is not None:
                    self._held[a.relay] = data
                elif a.relay in self.conns:
                    self.conns[a.relay].send(data)
            elif isinstance(a, PlanComputed):
                p = a.plan
                log.info("plan v%d (%s): %d sessions, %s, %.3f s; %s", p.version, p.strategy,
                         len(p.sessions), p.stats.solver, p.stats.total_s, a.reason)
            elif isinstance(a, PlanFailed):
                log.error("plan failed (%s): %s; keeping the last tables", a.reason, a.error)
            elif isinstance(a, Problem):
                log.warning("relay %s: %s", a.relay, a.message)
                if a.relay in self.conns:  # the relay hears what was wrong; its link stays up
                    self.conns[a.relay].send(encode(FrameType.ERROR,
                                                    a.message.encode()[:MAX_ERROR_BYTES]))
            elif isinstance(a, RelayDead):
                log.warning("relay %s declared dead (missed heartbeats)", a.relay)
                conn = self.conns.pop(a.relay, None)
                if conn is not None:
                    conn.dc = ""
                    conn.close()

    def tick(self) -> None:
        now = time.monotonic()
        for conn in [c for c, t in self.unregistered.items() if now - t > HELLO_TIMEOUT_S]:
            del self.unregistered[conn]
            log.warning("closing a connection that did not REGISTER within %g s", HELLO_TIMEOUT_S)
            conn.send(encode(FrameType.ERROR, f"no REGISTER within {HELLO_TIMEOUT_S:g} s".encode()))
            conn.close()
        if self._held is not None and time.monotonic() - self.started_s >= self.grace_s:
            held, self._held = self._held, None
            for relay, data in held.items():
                if relay in self.conns:
                    self.conns[relay].send(data)
        self.feed(Tick())

    def status(self) -> dict:
        st = self.ctl.status()
        st["uptime_s"] = time.monotonic() - self.started_s
        st["connected"] = sorted(self.conns)
        return st


def _finite(v: object) -> object:
    """JSON has no infinity: unbounded capacities and rates become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


# -- the status endpoint ------------------------------------------------------------------------------


async def _serve_status(server: ControllerServer, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, token: str | None = None) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if token is not None and not bearer_matches(head, token):
            code, body = "401 Unauthorized", {"error": "send 'Authorization: Bearer <--status-token>'"}
        elif method != "GET":
            code, body = "405 Method Not Allowed", {"error": "read-only: GET only"}
        elif path.split("?")[0] in ("/", "/status"):
            code, body = "200 OK", server.status()
        else:
            code, body = "404 Not Found", {"error": f"no such path {path}; try /status"}
        data = json.dumps(_finite(body), default=str).encode()
        writer.write(f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError,
            ConnectionError):
        pass
    finally:
        writer.close()


# -- the process --------------------------------------------------------------------------------------


MIN_HEARTBEAT_TIMEOUT_S = 0.5
"""Relays beat every 0.25 s (`relay.server.HEARTBEAT_INTERVAL_S`): a timeout shorter than two beats
would declare live relays dead on one late packet."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="stemflow controller", description="Run the Stemflow controller.")
    add_version(p)
    p.add_argument("--listen", required=True, type=address, metavar="HOST:PORT",
                   help="address for relays (port 0: any free port)")
    p.add_argument("--strategy", default="multipath",
                   help="routing strategy name or package.module:function (default: %(default)s)")
    p.add_argument("--scenario", help="start from this scenario's overlay (links, TCP settings); "
                                      "default: an empty overlay that grows from relay reports")
    p.add_argument("--status", type=address, metavar="HOST:PORT",
                   help="address of the read-only JSON status endpoint (default: none)")
    p.add_argument("--heartbeat-timeout", metavar="SECONDS", default=HEARTBEAT_TIMEOUT_S,
                   type=seconds_at_least(MIN_HEARTBEAT_TIMEOUT_S, "two heartbeats of a relay"),
                   help="declare a silent relay dead after this long (default: %(default)s)")
    p.add_argument("--startup-grace", metavar="SECONDS", default=STARTUP_GRACE_S,
                   type=seconds_at_least(0.0, "a wait cannot be negative"),
                   help="wait this long for relays to register before the first plan "
                        "(default: %(default)s)")
    p.add_argument("--parallel", type=int_between(1, 256), default=DEFAULT_PARALLEL, metavar="P",
                   help="TCP connections per hop the planner assumes without --scenario "
                        "(default: %(default)s)")
    p.add_argument("--certs", metavar="DIR",
                   help="the overlay's CA directory ('stemflow certs'): relays connect over mutual "
                        "TLS and may register only as the relay their certificate names "
                        "(default: plain TCP, anyone may register)")
    p.add_argument("--status-token", metavar="SECRET", default=os.environ.get(STATUS_TOKEN_ENV),
                   help="require 'Authorization: Bearer SECRET' on the status endpoint (needed to "
                        f"serve it beyond loopback; default: ${STATUS_TOKEN_ENV})")
    p.add_argument("--insecure", action="store_true",
                   help="listen beyond loopback without --certs, or serve the status there without "
                        "--status-token")
    p.add_argument("--loop", choices=eventloop.LOOPS, default=eventloop.DEFAULT_LOOP,
                   help="event loop (default: %(default)s; auto: uvloop where installed)")
    add_log_level(p)
    args = p.parse_args(argv)
    try:
        eventloop.resolve(args.loop)
        get_strategy(args.strategy)
        args.tls = MemberTls(args.certs, CONTROLLER_NAME, require_client_cert=True) if args.certs else None
    except (ValueError, UnknownStrategy) as e:
        p.error(str(e))
    if not args.insecure:
        for refusal in (exposure_refusal(args.listen, "--listen", [] if args.certs else ["--certs"]),
                        args.status and exposure_refusal(args.status, "--status",
                                                         [] if args.status_token else ["--status-token"])):
            if refusal:
                p.error(refusal)
    return args


def make_controller(args: argparse.Namespace) -> Controller:
    options = RoutingOptions()
    if args.scenario:
        scenario = load_scenario(args.scenario)
        net = NetworkState.from_scenario(scenario)
        options = RoutingOptions(fairness=scenario.routing.fairness)
    else:
        net = NetworkState(datacenters=(), links={}, clients={}, parallel=args.parallel)
    return Controller(net, args.strategy, options, heartbeat_timeout_s=args.heartbeat_timeout)


async def serve(args: argparse.Namespace) -> None:
    server = ControllerServer(make_controller(args), args.startup_grace, bool(args.certs))
    loop = asyncio.get_running_loop()
    host, port = split_address(args.listen)
    relays = await loop.create_server(lambda: RelayConnection(server), host, port,
                                      ssl=args.tls.server if args.tls else None)
    bound = relays.sockets[0].getsockname()
    print(f"controller listening on {bound[0]}:{bound[1]}", flush=True)
    status = None
    if args.status:
        shost, sport = split_address(args.status)
        status = await asyncio.start_server(lambda r, w: _serve_status(server, r, w, args.status_token),
                                            shost, sport,
                                            limit=MAX_HTTP_REQUEST_BYTES)
        sb = status.sockets[0].getsockname()
        print(f"controller status on http://{sb[0]}:{sb[1]}/status", flush=True)
    try:
        while True:
            await asyncio.sleep(TICK_S)
            server.tick()
    finally:
        relays.close()
        if status is not None:
            status.close()
        for conn in list(server.conns.values()):
            conn.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s controller %(levelname)s %(message)s")

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        await serve(args)

    try:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            eventloop.run(run(), args.loop)
    except ScenarioError as e:
        print(f"stemflow controller: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # raised by a listening socket: the controller never started
        where = f"{args.listen} or {args.status}" if args.status else args.listen
        print(f"stemflow controller: {bind_error('relays and status', where, e)}", file=sys.stderr)
        return 1
    return 0
