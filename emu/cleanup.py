"""What an emulation run created, written down as it is created, so that it can always be undone.

Owns the run registry: every process (by PID and start time, so a recycled PID is never
killed), every network namespace (by inode) and every link (by name) that a run creates, kept
in a JSON file under REGISTRY_DIR and rewritten after each addition. It owns teardown on a
normal exit, on an exception, on SIGINT/SIGTERM (`Teardown`, a context manager), and after a
SIGKILLed run (`cleanup_stale`, what `python -m stemflow.emu --cleanup` calls).

It never looks processes up by name and never touches anything not in a registry (unlike
Mininet's `mn -c`, which kills by name and deletes files under /tmp). What to create is left to
`stemflow.emu.topology` and `stemflow.emu.links`; they report each creation here first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

REGISTRY_DIR = Path(os.environ.get("STEMFLOW_EMU_REGISTRY", "/run/stemflow-emu"))
"""/run is a tmpfs: registries vanish at reboot, exactly when their PIDs stop meaning anything."""
TERM_GRACE_S = 2.0
"""How long a process gets to exit after SIGTERM (the delay line prints its statistics) before
SIGKILL."""
POLL_S = 0.02


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def netns_inode(pid: int | str = "self") -> int:
    """Inode of the network namespace process `pid` is in."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _processes_in(inodes: set[int]) -> list[int]:
    """PIDs of every process whose network namespace is one of `inodes`."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


@dataclass
class Proc:
    pid: int
    start: int
    what: str


@dataclass
class Registry:
    """The record of one run; every `add_*` is persisted before it returns."""

    run_id: str
    owner: Proc
    processes: list[Proc] = field(default_factory=list)
    namespaces: dict[int, str] = field(default_factory=dict)  # inode -> what
    links: list[str] = field(default_factory=list)  # names in the root namespace, if any

    @classmethod
    def create(cls, run_id: str) -> Registry:
        me = os.getpid()
        reg = cls(run_id, Proc(me, _start_time(me) or 0, "orchestrator"))
        reg.save()
        return reg

    @property
    def path(self) -> Path:
        return REGISTRY_DIR / f"{self.run_id}.json"

    def save(self) -> None:
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> Registry:
        d = json.loads(path.read_text())
        return cls(d["run_id"], Proc(**d["owner"]), [Proc(**p) for p in d["processes"]],
                   {int(k): v for k, v in d["namespaces"].items()}, list(d["links"]))

    def add_process(self, pid: int, what: str) -> None:
        start = _start_time(pid)
        if start is None:
            return  # already gone
        self.processes.append(Proc(pid, start, what))
        self.save()

    def add_namespace(self, pid: int, what: str) -> int:
        """Record the namespace process `pid` lives in; refuses the root or our own namespace."""
        ino = netns_inode(pid)
        if ino == netns_inode():
            raise RuntimeError(f"{what}: process {pid} is not in a namespace of its own")
        self.namespaces[ino] = what
        self.save()
        return ino

    def add_link(self, name: str) -> None:
        self.links.append(name)
        self.save()

    # -- teardown -------------------------------------------------------------------------

    def _alive(self) -> list[Proc]:
        return [p for p in self.processes
                if _start_time(p.pid) == p.start and not _is_zombie(p.pid)]

    def leftovers(self) -> list[str]:
        """What of this run still exists, in words (empty when all is gone)."""
        out = [f"process {p.pid} ({p.what})" for p in self._alive()]
        out += [f"process {pid} in namespace {self.namespaces[netns_inode(pid)]}"
                for pid in _processes_in(set(self.namespaces)) if not _is_zombie(pid)]
        out += [f"link {name}" for name in sorted(set(self.links) & _root_links())]
        return out

    def teardown(self) -> list[str]:
        """Stop every process, empty every namespace, delete every link; return what remains."""
        targets = {p.pid for p in self._alive()} | set(_processes_in(set(self.namespaces)))
        targets.discard(os.getpid())
        _signal_all(targets, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_S
        while time.monotonic() < deadline and any(not _is_zombie(p) for p in targets):
            _reap(targets)
            time.sleep(POLL_S)
        _signal_all({p for p in targets if not _is_zombie(p)}, signal.SIGKILL)
        # namespaces die with their last process; a late child may have appeared meanwhile
        _signal_all(set(_processes_in(set(self.namespaces))), signal.SIGKILL)
        for name in sorted(set(self.links) & _root_links()):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        deadline = time.monotonic() + TERM_GRACE_S
        while (left := self.leftovers()) and time.monotonic() < deadline:
            _reap(targets)
            time.sleep(POLL_S)
        if not left:
            self.path.unlink(missing_ok=True)
        return left


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pids: set[int]) -> None:
    """Collect our own children that exited, so that they do not linger as zombies."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------------------------------------------


class Teardown(contextlib.AbstractContextManager["Teardown"]):
    """Tear the registry down however the block ends; SIGTERM and SIGINT end it like Ctrl-C."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.remaining: list[str] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Teardown:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._interrupt)
        return self

    @staticmethod
    def _interrupt(signo: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signo).name}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # a second signal during teardown must not interrupt it half-way
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            self.remaining = self.registry.teardown()
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]


def registries() -> Iterator[Registry]:
    if not REGISTRY_DIR.is_dir():
        return
    for path in sorted(REGISTRY_DIR.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            yield Registry.load(path)


def cleanup_stale(include_live: bool = False) -> list[tuple[str, list[str]]]:
    """Tear down the runs whose orchestrator is dead (or all, with `include_live`).

    Returns (run id, what could not be removed) for every run it handled.
    """
    done = []
    for reg in registries():
        owner = reg.owner
        owner_alive = _start_time(owner.pid) == owner.start and not _is_zombie(owner.pid)
        if owner_alive and not include_live:
            continue
        done.append((reg.run_id, reg.teardown()))
    return done
