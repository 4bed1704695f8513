"""Quantities with units, parsed once at the edge of the system.

Owns the one internal unit system of Stemflow and the parsing of human-written quantities
("1 GB", "500 Mbit/s", "182.5 ms") into it. Everything past the scenario loader works in these
units, and names carry them (`rate_mbps`, `rtt_ms`, `size_bytes`, `duration_s`):

    sizes       bytes            (SI prefixes are decimal: 1 GB = 1e9 B; KiB/MiB/GiB are binary)
    rates       Mbit/s           (1 Mbit/s = 1e6 bit/s)
    RTT, delay  milliseconds     (network delays)
    durations   seconds          (workload and simulation time)
    loss        probability 0..1 (a "%" suffix is accepted: "1%" = 0.01)

Units are case-exact, as networking writes them: `B` is a byte and `bit` a bit, `M` is mega and
`m` milli. A unit whose reading depends on a convention people disagree about is rejected with
a message saying so, never guessed: `Mb` (megabit to a network engineer, megabyte to many
others) must be written `Mbit` or `MB`; `mbps` or `Ms` (milli? mega?) get a "did you mean".
A bare `b` is the bit only inside a rate (`Mb/s`, `Mbps`), where that reading is universal.
Values must be finite, and no larger than the sanity bounds below.
"""

from __future__ import annotations

import difflib
import math
import re

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ/%]*)\s*$")

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
"""SI prefixes; `K` is accepted for kilo as well (the common spelling of `KB`), both decimal."""
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}

_SIZE_BYTES: dict[str, float] = {"byte": 1.0, "bytes": 1.0}
for _p, _f in (_DECIMAL | _BINARY).items():
    _SIZE_BYTES[f"{_p}B"] = _f
    _SIZE_BYTES[f"{_p}bit"] = _f / 8.0
_SIZE_AMBIGUOUS = {f"{p}b": p for p in _DECIMAL | _BINARY}
"""`Mb` as a size: a megabit in networking, a megabyte to many; rejected, never guessed."""

_RATE_MBPS: dict[str, float] = {}
for _p, _f in (_DECIMAL | _BINARY).items():
    bits_mbps, bytes_mbps = _f / 1e6, _f * 8.0 / 1e6
    _RATE_MBPS |= {f"{_p}bit/s": bits_mbps, f"{_p}b/s": bits_mbps, f"{_p}bps": bits_mbps,
                   f"{_p}B/s": bytes_mbps, f"{_p}Bps": bytes_mbps}

_TIME_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "sec": 1e3, "min": 6e4, "h": 3.6e6}

MAX_SIZE_BYTES = 1e18
"""1 EB: a thousand times the largest single transfer any data-centre study reports; above it, a typo."""
MAX_RATE_MBPS = 1e9
"""1 Pbit/s: beyond every fibre system deployed; a rate above it is a typo, not a scenario."""
MAX_TIME_MS = 365 * 86400e3
"""One year: longer than any run; a delay or duration above it is a typo."""


class UnitError(ValueError):
    """A quantity that cannot be read in the unit expected; the message says what was found."""


def _split(text: str | float | int, what: str, examples: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise UnitError(f"expected a {what} like {examples}, found {text!r}")
    if isinstance(text, int | float):
        return _finite(float(text), text, what), ""
    m = _QUANTITY.match(str(text))
    if not m:
        raise UnitError(f"expected a {what} like {examples}, found {text!r}")
    return _finite(float(m.group(1)), text, what), m.group(2)


def _finite(value: float, text: object, what: str) -> float:
    if not math.isfinite(value):
        raise UnitError(f"a {what} must be a finite number, found {text!r}")
    return value


def _did_you_mean(unit: str, table: dict[str, float]) -> str:
    exact = [u for u in table if u.lower() == unit.lower()]
    close = exact or difflib.get_close_matches(unit, list(table), n=2, cutoff=0.6)
    if not close:
        return ""
    hint = " or ".join(repr(u) for u in close)
    return f" (units are case-sensitive: did you mean {hint}?)" if exact else f" (did you mean {hint}?)"


def _convert(text: str | float, table: dict[str, float], what: str, examples: str,
             bare_ok: bool, limit: float, limit_text: str) -> float:
    value, unit = _split(text, what, examples)
    if not unit:
        if not bare_ok:
            raise UnitError(f"expected a {what} with a unit, like {examples}, found {text!r}")
        factor = 1.0
    elif (factor := table.get(unit)) is None:
        hint = _did_you_mean(unit, table)
        raise UnitError(f"unknown unit {unit!r} for a {what}{hint}; use one of {examples}")
    result = value * factor
    if abs(result) > limit:
        raise UnitError(f"{text!r} is larger than any real {what} (the limit is {limit_text}); "
                        "check for a typo")
    return result


def parse_size_bytes(text: str | float, bare_ok: bool = False) -> float:
    """'1 GB' -> 1e9, '64 KiB' -> 65536, '8 Mbit' -> 1e6. 'Mb' is rejected as ambiguous."""
    m = None if isinstance(text, int | float) else _QUANTITY.match(str(text))
    if m and m.group(2) in _SIZE_AMBIGUOUS:
        p = _SIZE_AMBIGUOUS[m.group(2)]
        raise UnitError(f"{text!r} is ambiguous for a size: write '{p}bit' for {p}bits or '{p}B' for "
                        f"{p}bytes")
    return _convert(text, _SIZE_BYTES, "size", "'1 GB', '64 KiB', '1448 B', '8 Mbit'", bare_ok,
                    MAX_SIZE_BYTES, "1 EB")


def parse_rate_mbps(text: str | float, bare_ok: bool = False) -> float:
    """'500 Mbit/s' -> 500.0, '5 Gbps' -> 5000.0, '10 MB/s' -> 80.0 (B: bytes, b/bit: bits)."""
    return _convert(text, _RATE_MBPS, "rate", "'500 Mbit/s', '5 Gbps', '10 MB/s'", bare_ok,
                    MAX_RATE_MBPS, "1 Pbit/s")


def parse_time_ms(text: str | float, bare_ok: bool = False) -> float:
    """'182.5 ms' -> 182.5, '2 s' -> 2000.0."""
    return _convert(text, _TIME_MS, "time", "'182.5 ms', '2 s', '50 us'", bare_ok, MAX_TIME_MS, "1 year")


def parse_duration_s(text: str | float, bare_ok: bool = False) -> float:
    """'30 s' -> 30.0, '500 ms' -> 0.5; a bare number (where allowed) is seconds."""
    value, unit = _split(text, "duration", "'30 s', '500 ms'")
    if bare_ok and not unit:
        text = f"{value!r} s"
    return parse_time_ms(text) / 1e3


def parse_probability(text: str | float, bare_ok: bool = True) -> float:
    """'1%' -> 0.01, 0.01 -> 0.01."""
    value, unit = _split(text, "probability", "0.01 or '1%'")
    if unit == "%":
        return value / 100.0
    if unit:
        raise UnitError(f"expected a probability like 0.01 or '1%', found {text!r}")
    return value


def bits(size_bytes: float) -> float:
    return size_bytes * 8.0


def transfer_time_s(size_bytes: float, rate_mbps: float) -> float:
    """Time to move `size_bytes` at `rate_mbps` (no overheads)."""
    return size_bytes * 8.0 / (rate_mbps * 1e6)
