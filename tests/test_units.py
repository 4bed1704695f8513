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


@pytest.mark.parametrize(("text", "mbps"), [
    ("1 KB/s", 8e-3), ("1 kB/s", 8e-3), ("1 kbit/s", 1e-3), ("1 Kbps", 1e-3), ("1 Mb/s", 1.0),
    ("1 MBps", 8.0), ("1 GiB/s", 8 * 2**30 / 1e6), ("1 B/s", 8e-6),
])
def test_rate_units_are_case_exact_bytes_and_bits(text, mbps):
    assert parse_rate_mbps(text) == pytest.approx(mbps)


@pytest.mark.parametrize(("text", "size"), [("8 Mbit", 1e6), ("1 kB", 1e3), ("1 MiB", 2**20), ("3 bytes", 3)])
def test_sizes_in_bits_and_bytes(text, size):
    assert parse_size_bytes(text) == pytest.approx(size)


@pytest.mark.parametrize(("parse", "text", "says"), [
    (parse_size_bytes, "1 Mb", "ambiguous for a size: write 'Mbit' .* or 'MB'"),
    (parse_size_bytes, "1 Gb", "ambiguous"),
    (parse_size_bytes, "1 mb", "case-sensitive: did you mean"),
    (parse_rate_mbps, "5 mbps", "case-sensitive: did you mean 'Mbps'"),
    (parse_rate_mbps, "5 gbit/s", "did you mean 'Gbit/s'"),
    (parse_time_ms, "1 Ms", "case-sensitive: did you mean 'ms'"),
    (parse_rate_mbps, "1e400 Gbit/s", "finite"),
    (parse_size_bytes, "1e30 GB", "larger than any real size"),
    (parse_size_bytes, "10^30 GB", "expected a size"),
    (parse_rate_mbps, "2 Pbit/s", "larger than any real rate"),
    (parse_time_ms, float("inf"), "finite"),
])
def test_ambiguous_misspelled_and_absurd_quantities_are_rejected(parse, text, says):
    with pytest.raises(UnitError, match=says):
        parse(text)


def test_bare_durations_are_seconds_even_as_text():
    assert parse_duration_s("30", bare_ok=True) == 30.0
    assert parse_duration_s("500 ms", bare_ok=True) == 0.5
