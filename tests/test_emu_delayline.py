"""The delay line's pure parts: loss, the paced drop-tail queue, the delay, on-wire sizes."""

from __future__ import annotations

import random
import struct

import pytest
from stemflow.emu.delayline import (
    MIN_QUEUE_BYTES,
    VNET_HDR_LEN,
    DirectionParams,
    Scheduler,
    default_queue_bytes,
    direction_params,
    parse_args,
    wire_bytes,
)

MBIT = 1e6


def sched(rate_mbps: float, delay_ms: float, loss: float = 0.0, queue: int = 0,
          seed: int = 1) -> Scheduler:
    p = DirectionParams(rate_mbps * MBIT, delay_ms / 1e3, loss, queue)
    return Scheduler(p, random.Random(seed).random)


def test_a_lone_packet_takes_serialization_plus_delay():
    s = sched(100, 25)
    due = s.admit(10.0, 1500)
    assert due == pytest.approx(10.0 + 1500 * 8 / 100e6 + 0.025)


def test_back_to_back_packets_leave_at_the_link_rate():
    s = sched(10, 5)
    dues = [s.admit(0.0, 1250) for _ in range(10)]  # 1 ms each at 10 Mbit/s
    gaps = [b - a for a, b in zip(dues, dues[1:], strict=False)]
    assert gaps == pytest.approx([0.001] * 9)


def test_an_idle_link_does_not_bank_credit():
    s = sched(10, 0)
    s.admit(0.0, 1250)
    due = s.admit(5.0, 1250)  # long after the first left: no burst allowance
    assert due == pytest.approx(5.001)


def test_queue_drops_tail_once_the_backlog_exceeds_the_limit():
    s = sched(8, 0, queue=MIN_QUEUE_BYTES)  # 1 byte per microsecond
    accepted = sum(s.admit(0.0, 1000) is not None for _ in range(200))
    assert accepted == MIN_QUEUE_BYTES // 1000
    assert s.stats.queue_drops == 200 - accepted
    # the queue drains at the rate: half the limit later, half the room is back
    later = (MIN_QUEUE_BYTES // 2) * 8 / 8e6
    assert sum(s.admit(later, 1000) is not None for _ in range(200)) == (MIN_QUEUE_BYTES // 2) // 1000


def test_sustained_throughput_equals_the_rate_under_overload():
    s = sched(50, 10)
    t, step, delivered = 0.0, 1500 * 8 / 100e6, 0  # offered at 2x the rate for 2 s
    while t < 2.0:
        if s.admit(t, 1500) is not None:
            delivered += 1500
        t += step
    # accepted bytes = rate x time + what still sits in the queue
    expected = 50e6 / 8 * 2.0 + s.backlog_bytes(2.0)
    assert delivered == pytest.approx(expected, rel=0.01)


def test_default_queue_is_one_bdp_with_a_floor():
    assert default_queue_bytes(200e6, 0.1) == 2_500_000
    assert default_queue_bytes(1e6, 0.001) == MIN_QUEUE_BYTES
    assert DirectionParams(200e6, 0.05).queue_limit_bytes == 2_500_000


def test_loss_rate_matches_the_probability():
    s = sched(0, 0, loss=0.01, seed=7)
    n = 200_000
    kept = sum(s.admit(0.0, 100) is not None for _ in range(n))
    assert s.stats.lost == n - kept
    assert s.stats.lost / n == pytest.approx(0.01, rel=0.05)


def test_unlimited_rate_only_delays():
    s = sched(0, 30)
    assert [s.admit(1.0, 65000) for _ in range(3)] == pytest.approx([1.03] * 3)
    assert s.stats.queue_drops == 0


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="loss"):
        DirectionParams(1e6, 0.0, loss=1.0)
    with pytest.raises(ValueError, match="rate and delay"):
        DirectionParams(-1, 0.0)


def _tcp_v4(payload: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 32 + payload, 0, 0, 64, 6, 0,
                     bytes(4), bytes(4))
    tcp = struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 8 << 4, 0x10, 0, 0, 0) + bytes(12)
    return ip + tcp + bytes(payload)


def _vnet(gso_type: int, gso_size: int) -> bytes:
    return struct.pack("<BBHHHH", 0, gso_type, 52, gso_size, 0, 0)


def test_wire_bytes_of_a_plain_packet_is_its_length():
    pkt = _tcp_v4(1448)
    assert wire_bytes(pkt, vnet_hdr=False) == 1500
    assert wire_bytes(_vnet(0, 0) + pkt, vnet_hdr=True) == 1500


def test_wire_bytes_of_a_gso_super_packet_counts_every_segment_header():
    pkt = _vnet(1, 1448) + _tcp_v4(10 * 1448 + 100)  # 10 full segments and one of 100 bytes
    assert len(pkt) - VNET_HDR_LEN == 52 + 10 * 1448 + 100
    assert wire_bytes(pkt, vnet_hdr=True) == 11 * 52 + 10 * 1448 + 100


def test_command_line_gives_per_direction_parameters():
    a = parse_args(["--ns-a", "x", "--if-a", "a", "--ns-b", "y", "--if-b", "b",
                    "--rate-mbps", "100", "--delay-ms", "20", "--rate-mbps-ba", "40"])
    ab, ba = direction_params(a, ""), direction_params(a, "_ba")
    assert (ab.rate_bps, ba.rate_bps) == (100e6, 40e6)
    assert ab.delay_s == ba.delay_s == 0.02
