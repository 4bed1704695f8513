"""Whether this machine can run an emulation, and if not, what exactly to install or change.

Owns the checks made before anything is created: root, Debian's `mnexec`, an importable Mininet
module, the TUN device, `ip`, and the tools the link-accuracy tests use. It leaves choosing a
link backend to `stemflow.emu.links` (which probes the kernel for sch_netem).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass

PIP_INSTALL = f"{sys.executable} -m pip install 'stemflow[emu]'   (or: pip install mininet)"
APT_INSTALL = ("apt-get install -y --no-install-recommends mininet iproute2 iputils-ping")


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}\n    fix: {self.fix}"


def problems(need_ping: bool = False) -> list[Problem]:
    """Every missing prerequisite, each with the command that fixes it (empty when all is well)."""
    out = []
    if os.geteuid() != 0:
        out.append(Problem("emulation needs root (namespaces, TUN devices, routes)",
                           f"run as root: sudo {sys.executable} -m stemflow.emu ..."))
    if shutil.which("mnexec") is None:
        out.append(Problem("Mininet's mnexec is not on PATH (Debian's mininet package has it)",
                           APT_INSTALL))
    if importlib.util.find_spec("mininet") is None:
        out.append(Problem(f"the mininet Python module does not import in {sys.executable} "
                           "(Debian's module serves only the system Python)", PIP_INSTALL))
    if not os.path.exists("/dev/net/tun"):
        out.append(Problem("/dev/net/tun is missing (the user-space link backend needs TUN)",
                           "modprobe tun   (or run the container with --device /dev/net/tun)"))
    if shutil.which("ip") is None:
        out.append(Problem("the ip command (iproute2) is missing", APT_INSTALL))
    if need_ping and shutil.which("ping") is None:
        out.append(Problem("ping is missing (link RTT checks)", APT_INSTALL))
    return out


class PrerequisiteError(RuntimeError):
    def __init__(self, found: list[Problem]):
        self.problems = found
        super().__init__("cannot emulate on this machine:\n  " + "\n  ".join(map(str, found)))


def require(need_ping: bool = False) -> None:
    """Raise `PrerequisiteError` listing every missing prerequisite and its fix."""
    found = problems(need_ping)
    if found:
        raise PrerequisiteError(found)
