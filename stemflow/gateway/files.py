"""Large messages over plain HTTP between a page and its gateway (sans-IO parts).

A browser's WebSocket is slow for bulk bytes (Chromium pushes 10 MB into one in about 0.12 s on
the benchmark machine, 5x what the whole relay path takes), while its `fetch()` moves them at
memory speed. So a page POSTs a large message's body to its gateway, which cuts it into the
envelope's fragments and publishes them reliably; and a receiving gateway keeps the fragments
of each multi-fragment message it receives here, tells the page on its WebSocket (a MESSAGE
with the FILE flag and the first fragment's envelope, body empty), and the page GETs the body,
streamed as the fragments arrive. Owns the store of those fragments (bounded, kept `KEEP_S`),
the upload's parameters and their checks. The HTTP routes and who may use them are the server's.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from stemflow.gateway import envelope

MAX_FILE_BYTES = 10 << 20
"""The largest message a page may POST (the chat's 10 MiB files). Larger: 413, one line."""
STORE_BYTES = 64 << 20
"""Bytes of fragments a gateway keeps for pages to GET; past this the oldest message goes."""
KEEP_S = 30.0
"""How long a received message is kept for a GET: the topic window's time, so a page that
reconnects here after a resume finds it."""
_SENDER = re.compile(r"[0-9a-f]{16}")


class BadUpload(ValueError):
    """An upload's parameters do not describe a message (said to the page as a 400, one line)."""


@dataclass(frozen=True)
class Upload:
    """What a page says about the message it POSTs: the envelope's fields but the body."""

    topic: str
    sender: bytes
    number: int
    sent_ms: float
    meta: str
    delay_sensitive: bool
    first_ack: int = 0
    """Non-zero: fragment i's acceptance by the relay is sent on the WebSocket as ACK first_ack + i."""

    @classmethod
    def parse(cls, query: dict[str, str]) -> Upload:
        try:
            topic, sender = query["topic"], query["sender"]
            number, sent_ms = int(query["number"]), float(query["sent_ms"])
        except KeyError as e:
            raise BadUpload(f"missing parameter {e.args[0]}") from None
        except ValueError:
            raise BadUpload("number must be an integer and sent_ms a number") from None
        if not topic or len(topic.encode()) > 255:
            raise BadUpload("topic must be 1 to 255 bytes")
        if not _SENDER.fullmatch(sender):
            raise BadUpload("sender must be 16 lowercase hex digits")
        if not 0 < number < 1 << 32 or not 0 <= sent_ms < 1e15:
            raise BadUpload("number must be in 1..2^32-1 and sent_ms a time in ms")
        try:
            first_ack = int(query.get("acks", "0"))
        except ValueError:
            raise BadUpload("acks must be an integer") from None
        if not 0 <= first_ack < 1 << 31:
            raise BadUpload("acks must be in 0..2^31-1")
        meta = query.get("meta", "")
        if len(meta.encode()) > 4096:
            raise BadUpload("meta is over 4096 bytes")
        return cls(topic, bytes.fromhex(sender), number, sent_ms, meta,
                   query.get("delay_sensitive", "0") == "1", first_ack)


def fragment(u: Upload, dc: str, index: int, count: int, total: int, body: bytes) -> bytes:
    """One relay message of an uploaded message, as stemflow.js would have made it."""
    return envelope.encode_fragment(u.sender, u.number, index, count, total,
                                    sent_ms=u.sent_ms, dc=dc, meta=u.meta, body=body)


@dataclass
class Held:
    """The fragments of one message as this gateway received them."""

    topic: str
    count: int
    total: int
    received_s: float
    parts: dict[int, memoryview] = field(default_factory=dict)
    bytes: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.count


class Store:
    """Multi-fragment messages received on topics pages read here, by message id."""

    def __init__(self, limit_bytes: int = STORE_BYTES, keep_s: float = KEEP_S):
        self.limit_bytes, self.keep_s = limit_bytes, keep_s
        self.held: OrderedDict[str, Held] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def add(self, topic: str, h_: Head, data: bytes, now_s: float) -> Held:
        """Keep one fragment (a duplicate, e.g. from a resent upload, changes nothing)."""
        total = int.from_bytes(data[22:26], "big")
        h = self.held.get(h_.message_id)
        if h is None:
            h = self.held[h_.message_id] = Held(topic, h_.count, total, now_s)
        if h_.index not in h.parts and h_.index < h.count:
            body = memoryview(data)[h_.body_at:]
            h.parts[h_.index] = body
            h.bytes += len(body)
            self.bytes += len(body)
            h.changed.set()
            h.changed = asyncio.Event()
        while self.bytes > self.limit_bytes and len(self.held) > 1:
            self._drop(next(iter(self.held)))
        return h

    def get(self, message_id: str) -> Held | None:
        return self.held.get(message_id)

    def expire(self, now_s: float) -> None:
        while self.held:
            mid, h = next(iter(self.held.items()))
            if now_s - h.received_s <= self.keep_s:
                break
            self._drop(mid)

    def _drop(self, mid: str) -> None:
        h = self.held.pop(mid)
        self.bytes -= h.bytes
        self.evicted += 1
        h.changed.set()  # a reader waiting on it learns it is gone


@dataclass(frozen=True)
class Head:
    """Where a relay message sits in its message, read from the envelope without copying."""

    message_id: str
    index: int
    count: int
    body_at: int


def head(data: bytes) -> Head | None:
    """The envelope's position fields, or None when `data` is not a stemflow.js envelope."""
    if len(data) < 37 or data[0] != envelope.VERSION:
        return None
    index, count = int.from_bytes(data[14:18], "big"), int.from_bytes(data[18:22], "big")
    dc_len = data[34]
    if len(data) < 37 + dc_len:
        return None
    body_at = 37 + dc_len + int.from_bytes(data[35 + dc_len:37 + dc_len], "big")
    if len(data) < body_at or index >= count:
        return None
    return Head(f"{data[2:10].hex()}:{int.from_bytes(data[10:14], 'big')}", index, count, body_at)
