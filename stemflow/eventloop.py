"""Which asyncio event loop a Stemflow process runs on, chosen on its command line.

The relays' work is per-frame Python on a socket loop, so the loop's own cost per read, write and
callback is a large share of a hop's latency (benchmarks/dataplane.py measures relays on both).
asyncio's own loop stays available: it is the reference implementation, and the one a platform
without uvloop has. Everything in Stemflow
runs on either: no code here depends on `asyncio.Transport` subclasses or loop internals.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("auto", "uvloop", "asyncio")
"""`--loop` choices; `auto` is uvloop where it is installed, else asyncio's own loop."""
DEFAULT_LOOP = "asyncio"
"""Relays and the controller run on asyncio's own loop unless told otherwise: it is the loop the
emulated paper reproductions were validated on. On uvloop, a reliable stream moved to another
route while its subscriber stalls loses frames at the reorder buffer's hard bound (see
docs/relays.md, "Known gaps"); until that is fixed, uvloop is an explicit choice."""


def resolve(name: str) -> str:
    """The concrete loop `name` stands for; a ValueError a user can act on if it cannot run."""
    if name not in LOOPS:
        raise ValueError(f"unknown event loop {name!r}; expected one of {', '.join(LOOPS)}")
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    if name == "auto":
        return "uvloop" if have_uvloop else "asyncio"
    if name == "uvloop" and not have_uvloop:
        raise ValueError("event loop 'uvloop' is not installed (pip install uvloop), "
                         "or choose --loop asyncio")
    return name


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A constructor of new event loops of the kind `name` resolves to."""
    if resolve(name) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], name: str = "auto") -> T:
    """`asyncio.run(main)` on the named loop (3.11's asyncio.run takes no loop factory)."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
