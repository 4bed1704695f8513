"""Waits, inside the controller's host, until an emulated overlay is ready for its sessions.

Owns one question the orchestrator asks before any session starts: has every relay registered
with the controller, received a table after the controller's start-up grace, and connected all
P of its connections to every relay it shares a link with, with a measured RTT? It reads the controller's
read-only status endpoint (`stemflow controller --status`) from inside the controller's host (the
orchestrator itself opens no socket), prints READY once the answer is yes, and otherwise, after
a timeout, says which relay or peer link is missing and exits 1.

A fixed wait cannot answer it: how long the processes take to start depends on the machine's
load. Measured here on a loaded machine: with the controller starting 6 s late, the first table
of a session was held by the start-up grace and its frames then waited for the peer connections
to be dialled, and the Table I request-response took 886 ms instead of about 400 ms (7 s late:
4 636 ms). A session set-up is then no longer the exchange both drivers model.

    python -m stemflow.emu.overlay_ready --status ADDR:PORT --relays A,B,... --links A:B,... \
        --parallel P

With `--dump` it instead prints the status once, as one JSON line: the orchestrator records the
plan and the relays' counters while sessions run (`stemflow.emu.run.StatusRecorder`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

POLL_S = 0.1
"""A twentieth of the controller's 2 s failure budget: the wait ends soon after the overlay is up."""
TIMEOUT_S = 120.0
"""Start-up of seven Python processes on two loaded cores has taken over 10 s here; two minutes
means something is broken, not slow."""
REQUEST_TIMEOUT_S = 2.0


def missing(status: Mapping[str, Any], relays: Sequence[str], links: Sequence[tuple[str, str]],
            parallel: int) -> list[str]:
    """What the overlay still lacks, in words; empty once it is ready. `links`: the overlay's
    relay pairs (each end must have connected to the other; relays that share no link cannot
    reach each other in the emulated network).

    Example: a status whose `relays` lacks "b" gives ["relay b has not registered", ...].
    """
    out = [f"relay {r} has not registered" for r in relays if r not in status.get("relays", {})]
    reports = status.get("reports", {})
    for a, b in links:
        for r, peer in ((a, b), (b, a)):
            ln = {x.get("peer"): x for x in (reports.get(r) or {}).get("links", [])}.get(peer)
            if ln is None or ln.get("rtt_ms") is None:
                out.append(f"relay {r} has no measured link to {peer}")
            elif ln.get("connections", 0) < parallel:
                out.append(f"relay {r} has {ln.get('connections', 0)} of {parallel} connections "
                           f"to {peer}")
    return out


def fetch_status(address: str, token: str = "") -> dict[str, Any]:
    """The controller's status; `token`: its `--status-token`, if it has one."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", "/status", headers={"Authorization": f"Bearer {token}"} if token else {})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def wait(address: str, relays: Sequence[str], links: Sequence[tuple[str, str]], parallel: int,
         timeout_s: float, token: str = "") -> list[str]:
    """Poll until the overlay is ready (returns []) or `timeout_s` passes (returns what is missing)."""
    deadline = time.monotonic() + timeout_s
    lacking = ["the controller's status endpoint has not answered"]
    while time.monotonic() < deadline:
        try:
            lacking = missing(fetch_status(address, token), relays, links, parallel)
        except (OSError, ValueError, http.client.HTTPException) as e:
            lacking = [f"the controller's status endpoint has not answered ({e})"]
        if not lacking:
            return []
        time.sleep(POLL_S)
    return lacking


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stemflow.emu.overlay_ready")
    ap.add_argument("--status", required=True, help="the controller's status endpoint, ADDR:PORT")
    ap.add_argument("--relays", default="", help="every relay's datacenter, comma-separated")
    ap.add_argument("--links", default="", help="the overlay's relay pairs, A:B,C:D,...")
    ap.add_argument("--parallel", type=int, default=1, help="connections per pair of relays")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="give up after this many s")
    ap.add_argument("--status-token", default="", help="the controller's --status-token, if any")
    ap.add_argument("--dump", action="store_true", help="print the status once, as JSON, and exit")
    a = ap.parse_args(argv)
    if a.dump:
        try:
            print(json.dumps(fetch_status(a.status, a.status_token), separators=(",", ":")), flush=True)
        except (OSError, ValueError, http.client.HTTPException) as e:
            print(f"no status from {a.status}: {e}", file=sys.stderr)
            return 1
        return 0
    links = [tuple(pair.split(":", 1)) for pair in a.links.split(",") if pair]
    lacking = wait(a.status, a.relays.split(","), links, a.parallel, a.timeout, a.status_token)
    if lacking:
        print(f"overlay not ready after {a.timeout:g} s: {'; '.join(lacking[:5])}", file=sys.stderr)
        return 1
    print("READY", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
