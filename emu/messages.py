"""The messages an emulated publisher sends: their header, and one entry of a publisher's schedule.

Owns the header every workload message starts with (sequence number, publish time on
CLOCK_MONOTONIC, which all namespaces of the machine share), so that a subscriber measures
one-way delay and order by itself. What a session sends is its workload kind's
(`WorkloadKind.schedule`); sending and receiving it is `stemflow.emu.workload`'s.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!Qd")  # sequence number, publish time (monotonic seconds)


@dataclass(frozen=True)
class Message:
    seq: int
    size_bytes: int
    """At least `HEADER.size`: every message carries its header."""
    due_s: float  # offset from the start at which it is published (0: as soon as possible)


def encode(m: Message, now: float) -> bytes:
    return HEADER.pack(m.seq, now) + bytes(m.size_bytes - HEADER.size)
