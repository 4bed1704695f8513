"""Quantities with units, parsed once at the edge of the system.

Owns the one internal unit system of Stemflow and the parsing of human-written quantities
("1 GB", "500 Mbit/s", "182.5 ms") into it. Everything past the scenario loader works in these
units, and names carry them (`rate_mbps`, `rtt_ms`, `size_bytes`, `duration_s`):

    sizes       bytes            (SI prefixes are decimal: 1 GB = 1e9 B; KiB/MiB/GiB are binary)
    rates       Mbit/s           (1 Mbit/s = 1e6 bit/s)
    RTT, delay  milliseconds     (network delays)
    durations   seconds          (workload and simulation time)
    loss        probability 0..1 (a "%" suffix is accepted: "1%" = 0.01)
"""

from __future__ import annotations

import re

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z/%]*)\s*$")

_SIZE_BYTES = {
    "b": 1, "byte": 1, "bytes": 1,
    "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_RATE_MBPS = {
    "bps": 1e-6, "bit/s": 1e-6,
    "kbps": 1e-3, "kbit/s": 1e-3, "kb/s": 1e-3,
    "mbps": 1.0, "mbit/s": 1.0, "Mb/s": 1.0,
    "gbps": 1e3, "gbit/s": 1e3, "Gb/s": 1e3,
    "kB/s": 8e-3, "MB/s": 8.0, "GB/s": 8e3,  # bytes per second
    "tbps": 1e6, "tbit/s": 1e6,
}
_TIME_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "sec": 1e3, "min": 6e4}


class UnitError(ValueError):
    """A quantity that cannot be read in the unit expected; the message says what was found."""


def _split(text: str | float | int, what: str, examples: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise UnitError(f"expected a {what} like {examples}, found {text!r}")
    if isinstance(text, int | float):
        return float(text), ""
    m = _QUANTITY.match(str(text))
    if not m:
        raise UnitError(f"expected a {what} like {examples}, found {text!r}")
    return float(m.group(1)), m.group(2)


def _convert(text: str | float, table: dict[str, float], what: str, examples: str,
             bare_ok: bool) -> float:
    value, unit = _split(text, what, examples)
    if not unit:
        if bare_ok:
            return value
        raise UnitError(f"expected a {what} with a unit, like {examples}, found {text!r}")
    factor = table.get(unit) or table.get(unit.lower())
    if factor is None:
        raise UnitError(f"unknown unit {unit!r} for a {what}; use one of {examples}")
    return value * factor


def parse_size_bytes(text: str | float, bare_ok: bool = False) -> float:
    """'1 GB' -> 1e9. Decimal SI prefixes, binary with 'i' (KiB)."""
    return _convert(text, _SIZE_BYTES, "size", "'1 GB', '64 KiB', '1448 B'", bare_ok)


def parse_rate_mbps(text: str | float, bare_ok: bool = False) -> float:
    """'500 Mbit/s' -> 500.0, '5 Gbps' -> 5000.0 (bits, not bytes)."""
    return _convert(text, _RATE_MBPS, "rate", "'500 Mbit/s', '5 Gbps'", bare_ok)


def parse_time_ms(text: str | float, bare_ok: bool = False) -> float:
    """'182.5 ms' -> 182.5, '2 s' -> 2000.0."""
    return _convert(text, _TIME_MS, "time", "'182.5 ms', '2 s', '50 us'", bare_ok)


def parse_duration_s(text: str | float, bare_ok: bool = False) -> float:
    """'30 s' -> 30.0, '500 ms' -> 0.5."""
    if bare_ok and _is_bare(text):
        return float(text)
    return parse_time_ms(text) / 1e3


def parse_probability(text: str | float, bare_ok: bool = True) -> float:
    """'1%' -> 0.01, 0.01 -> 0.01."""
    value, unit = _split(text, "probability", "0.01 or '1%'")
    if unit == "%":
        return value / 100.0
    if unit:
        raise UnitError(f"expected a probability like 0.01 or '1%', found {text!r}")
    return value


def _is_bare(text: str | float) -> bool:
    return isinstance(text, int | float) and not isinstance(text, bool)


def bits(size_bytes: float) -> float:
    return size_bytes * 8.0


def transfer_time_s(size_bytes: float, rate_mbps: float) -> float:
    """Time to move `size_bytes` at `rate_mbps` (no overheads)."""
    return size_bytes * 8.0 / (rate_mbps * 1e6)
