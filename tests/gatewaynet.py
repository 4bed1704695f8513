"""Gateway processes in front of an `Overlay`'s relays, on loopback, killed by PID at the end.

`Gateways` starts one `stemflow gateway` per relay named, each on an ephemeral port, and knows
each one's URL from the line it prints when it listens; each gateway is told of the others
(`--peer`), as a deployment would. A gateway can be killed and started again on the same port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from relaynet import PYTHON, ROOT, Overlay, wait_line


class Gateways:
    def __init__(self, overlay: Overlay, dcs: list[str]):
        self.overlay, self.tmp = overlay, overlay.tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.url: dict[str, str] = {}
        try:
            for dc in dcs:
                self.start(dc)
        except BaseException:
            self.close()
            raise

    def start(self, dc: str) -> str:
        listen = self.url[dc].removeprefix("http://") if dc in self.url else "127.0.0.1:0"
        peers = [a for d, u in self.url.items() if d != dc for a in ("--peer", self.ws(d, u))]
        log = open(self.tmp / f"gateway-{dc}.log", "ab")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        p = subprocess.Popen([PYTHON, "-m", "stemflow.cli", "gateway", "--relay", self.overlay.addr[dc],
                              "--listen", listen, "--log-level", "INFO", *peers],
                             stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=env, bufsize=0)
        self.procs[dc] = p
        self.url[dc] = wait_line(p, f"gateway {dc} listening").split()[-1]
        return self.url[dc]

    @staticmethod
    def ws(dc: str, url: str) -> str:
        return url.replace("http://", "ws://") + "/ws"

    def ws_url(self, dc: str) -> str:
        return self.ws(dc, self.url[dc])

    def kill(self, dc: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[dc]
        if p.poll() is None:
            os.kill(p.pid, sig)
            p.wait(5)
        if p.stdout is not None:
            p.stdout.close()

    def close(self) -> None:
        for dc in list(self.procs):
            self.kill(dc)

    def logs(self) -> str:
        logs = sorted(Path(self.tmp).glob("gateway-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)


@contextlib.contextmanager
def overlay_with_gateways(tmp: Path, **overlay_args) -> Iterator[tuple[Overlay, Gateways]]:
    """Relays a and b (`direct_hop`) with a gateway in front of each, all stopped at the end."""
    o = Overlay(tmp, ["a", "b"], "direct_hop", **overlay_args)
    g = None
    try:
        g = Gateways(o, ["a", "b"])
        yield o, g
    finally:
        if g is not None:
            g.close()
        o.close()
