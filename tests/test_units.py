"""Quantities with units: one internal unit system, clear errors for anything else."""

import pytest

from stemflow.units import (
    UnitError,
    parse_duration_s,
    parse_probability,
    parse_rate_mbps,
    parse_size_bytes,
    parse_time_ms,
)


@pytest.mark.parametrize(("text", "mbps"), [
    ("500 Mbit/s", 500.0), ("5 Gbps", 5000.0), ("1.5Gbit/s", 1500.0), ("100 kbit/s", 0.1),
    ("10 MB/s", 80.0), ("181 Mbps", 181.0),
])
def test_rates(text, mbps):
    assert parse_rate_mbps(text) == pytest.approx(mbps)


@pytest.mark.parametrize(("text", "size"), [
    ("1 GB", 1e9), ("64 KiB", 65536), ("4.13 MB", 4.13e6), ("1448 B", 1448), ("1 KB", 1000),
])
def test_sizes(text, size):
    assert parse_size_bytes(text) == pytest.approx(size)


def test_times_and_probabilities():
    assert parse_time_ms("182.5 ms") == 182.5
    assert parse_time_ms("2 s") == 2000.0
    assert parse_time_ms("50 us") == pytest.approx(0.05)
    assert parse_duration_s("500 ms") == 0.5
    assert parse_duration_s(3, bare_ok=True) == 3.0
    assert parse_probability("1%") == pytest.approx(0.01)
    assert parse_probability(0.02) == 0.02


@pytest.mark.parametrize(("parse", "text", "says"), [
    (parse_rate_mbps, 500, "with a unit"),
    (parse_rate_mbps, "500 furlongs", "unknown unit 'furlongs'"),
    (parse_size_bytes, "big", "expected a size"),
    (parse_time_ms, "10 Mbps", "unknown unit"),
    (parse_probability, "1 ms", "probability"),
])
def test_bad_quantities_say_what_was_found(parse, text, says):
    with pytest.raises(UnitError, match=says):
        parse(text)
