"""A relay forwards runs of frames as views into its receive buffer; a transport that keeps such
a view (Python 3.12+'s asyncio and uvloop keep what the socket did not take, without copying)
must never see that buffer overwritten by the next read."""

from __future__ import annotations

from stemflow.relay.outbox import BULK_RELIABLE
from stemflow.relay.server import Connection, Relay


class KeepingTransport:
    """Takes nothing at once and keeps the views it is given, as a busy socket's transport does."""

    def __init__(self) -> None:
        self.kept: list[memoryview] = []

    def write(self, data) -> None:
        self.kept.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(len(d) for d in self.kept)

    def is_closing(self) -> bool:
        return False


def test_a_buffer_a_transport_still_holds_is_not_read_into_again():
    relay = Relay("a", "127.0.0.1:0", "127.0.0.1:1")
    src, dst = Connection(relay), Connection(relay)
    dst.transport = KeepingTransport()  # type: ignore[assignment]
    first = src.get_buffer(-1)
    first[:5] = b"frame"
    src.rb.updated(5)
    dst.send(src.rb.view[0:5], 1, BULK_RELIABLE, src)  # forwarded without a copy
    src.rb.start = 5
    src.rb.consumed()  # the read is done: the relay moves on to the next one
    nxt = src.get_buffer(-1)
    nxt[:5] = b"XXXXX"  # the next read lands in the buffer
    assert bytes(dst.transport.kept[0]) == b"frame"


def test_a_buffer_nobody_holds_is_reused():
    relay = Relay("a", "127.0.0.1:0", "127.0.0.1:1")
    src = Connection(relay)
    before = src.rb.buf
    src.get_buffer(-1)[:5] = b"frame"
    src.rb.updated(5)
    src.rb.start = 5
    src.rb.consumed()
    assert src.rb.buf is before
