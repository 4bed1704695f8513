"""The message envelope stemflow.js puts in every relay message, for Python members of a room.

Owns the envelope's layout in Python (docs/gateway.md, "The envelope"; stemflow.js is the other
implementation, and tests/test_gateway_browser.py checks that the two understand each other):
message ids, fragments, the sender's datacenter and send time, the application's metadata. A
scripted member (a benchmark, an emulated chat user) uses it to speak to browsers through a
gateway. Sockets are the caller's.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

VERSION = 1
FRAGMENT_BYTES = 256 << 10
"""As stemflow.js's FRAGMENT_BYTES: bodies are cut at the same size."""
DONE_KEEP = 65536
"""Delivered message ids remembered to drop duplicates: more than a busy room sends in the
30 s a resume may replay."""
_HEAD = struct.Struct("!BB8sIIIId")


class BadEnvelope(Exception):
    """Bytes that are not a stemflow.js envelope."""


@dataclass(frozen=True)
class Fragment:
    sender: bytes
    number: int
    index: int
    count: int
    total_bytes: int
    sent_ms: float
    dc: str
    meta: str
    body: bytes

    @property
    def message_id(self) -> str:
        """As stemflow.js writes it: sender id in hex, a colon, the message number."""
        return f"{self.sender.hex()}:{self.number}"


def fragments(sender: bytes, number: int, body: bytes, *, sent_ms: float, dc: str, meta: str) -> list[bytes]:
    """The relay messages that carry one message of any size."""
    if len(sender) != 8:
        raise ValueError("the sender id is 8 bytes")
    count = max(1, -(-len(body) // FRAGMENT_BYTES))
    return [encode_fragment(sender, number, i, count, len(body), sent_ms=sent_ms, dc=dc, meta=meta,
                            body=body[i * FRAGMENT_BYTES:(i + 1) * FRAGMENT_BYTES]) for i in range(count)]


def encode_fragment(sender: bytes, number: int, index: int, count: int, total: int, *,
                    sent_ms: float, dc: str, meta: str, body: bytes) -> bytes:
    """One fragment's relay message (a gateway makes them for a page's HTTP upload)."""
    dc_b, meta_b = dc.encode()[:255], meta.encode()
    return (_HEAD.pack(VERSION, 0, sender, number, index, count, total, sent_ms)
            + bytes([len(dc_b)]) + dc_b + len(meta_b).to_bytes(2, "big") + meta_b + body)


def decode(data: bytes) -> Fragment:
    if len(data) < _HEAD.size + 3 or data[0] != VERSION:
        raise BadEnvelope("not a version-1 envelope")
    _, _, sender, number, index, count, total, sent_ms = _HEAD.unpack_from(data)
    at = _HEAD.size
    dc_len = data[at]
    meta_at = at + 1 + dc_len
    if len(data) < meta_at + 2:
        raise BadEnvelope("envelope ends inside its datacenter name")
    meta_len = int.from_bytes(data[meta_at:meta_at + 2], "big")
    body_at = meta_at + 2 + meta_len
    if len(data) < body_at or index >= count:
        raise BadEnvelope("envelope ends inside its metadata, or its fragment index is past its count")
    try:
        dc, meta = data[at + 1:meta_at].decode(), data[meta_at + 2:body_at].decode()
    except UnicodeDecodeError as e:
        raise BadEnvelope(f"envelope text is not UTF-8: {e.reason}") from None
    return Fragment(sender, number, index, count, total, sent_ms, dc, meta, data[body_at:])


class Assembler:
    """Whole messages from fragments, each message once (duplicates after a resume dropped)."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[int, bytes]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()

    def add(self, f: Fragment) -> bytes | None:
        """The whole body once `f` completes its message, else None."""
        mid = f.message_id
        if mid in self._done:
            return None
        if f.count == 1:
            self._finish(mid)
            return f.body
        parts = self._parts.setdefault(mid, {})
        parts[f.index] = f.body
        if len(parts) < f.count:
            return None
        del self._parts[mid]
        self._finish(mid)
        return b"".join(parts[i] for i in range(f.count))

    def _finish(self, mid: str) -> None:
        self._done[mid] = None
        if len(self._done) > DONE_KEEP:
            self._done.popitem(last=False)
