"""Argument types every `stemflow` command line shares, so each checks them the same way.

Owns the parser class of every command (a mistake is one line naming the flag, exit status 2,
never a traceback), the validation of what a person types for an address (`HOST:PORT`), a period
in seconds, a count and a log level, the `--version` flag, and the one-line wording of a socket
that cannot be bound.
What the addresses are used for is each command's own business.
"""

from __future__ import annotations

import argparse
import errno
from collections.abc import Callable
from importlib import metadata

from stemflow.protocol import split_address

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (and exit status 2), pointing at --help."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def address(text: str) -> str:
    """`HOST:PORT` with a port in 0..65535 (0: any free port); returned as given."""
    try:
        _, port = split_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if port > 65535:
        raise argparse.ArgumentTypeError(f"address {text!r}: port {port} is above 65535")
    return text


def seconds_at_least(minimum: float, why: str) -> Callable[[str], float]:
    """A type for a period in seconds that must be finite and at least `minimum` (`why` says why)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
        if not minimum <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text} s: must be at least {minimum:g} s ({why})")
        return value
    return parse


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A type for an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value}: must be between {low} and {high}")
        return value
    return parse


def log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", type=log_level, default="INFO", metavar="LEVEL",
                   help=f"{', '.join(LOG_LEVELS)} (default: %(default)s)")


def version() -> str:
    try:
        return metadata.version("stemflow")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def add_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")


def bind_error(what: str, addr: str, e: OSError) -> str:
    """'cannot listen on 127.0.0.1:7000: the port is in use' — a socket that could not be bound."""
    reason = {errno.EADDRINUSE: "the port is in use (another process listens there)",
              errno.EADDRNOTAVAIL: "no interface of this machine has that address",
              errno.EACCES: "permission denied (ports below 1024 need root)"}.get(
        e.errno or 0, e.strerror or str(e))
    return f"cannot listen on {addr} for {what}: {reason}"

