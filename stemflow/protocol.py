"""The wire format, sans-IO: frames in bytes out, bytes in frames out; no sockets, no clocks.

Owns the fixed binary frame header, the frame types and flags, the named limits, the decoder
(`FrameDecoder`, h11 style: `receive_data(bytes) -> frames`, `receive_data(b"")` at end of stream),
the header scanner the relay uses to parse its receive buffer in place, and the JSON payloads of
the control messages (register, report, table push). Relays, the controller process and clients
all speak through this module; what they do with a frame is theirs.

Header (network byte order, 24 bytes)::

    0  u8   version            (VERSION)
    1  u8   type               (FrameType)
    2  u8   flags              (Flag bits)
    3  u8   route              multicast tree id; 0 = unicast multipath route
    4  u32  session            session id: `session_id(topic)`
    8  u32  origin             publisher id, chosen by the publishing client
    12 u64  seq                per (session, origin) sequence number; ping id for PING/PONG
    20 u32  length             payload bytes that follow

Any malformed input — a bad version, an unknown type, a length over the limit, a stream that ends
mid-frame — raises `ProtocolError`; the owner of the connection closes that connection only.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the routing types pull in networkx; clients never need them
    from stemflow.routing.plan import Entry, RelayTable

VERSION = 1
HEADER = struct.Struct("!BBBBIIQI")
HEADER_SIZE = HEADER.size

MAX_PAYLOAD_BYTES = 1 << 20
"""1 MiB: 16x our largest benchmark message (64 KiB) and above a 4K video key frame; a receiver
must hold one whole frame in its buffer, so this bounds per-connection memory. Larger
application messages are the application's to cut."""
MAX_BUFFERED_BYTES = HEADER_SIZE + MAX_PAYLOAD_BYTES
"""A decoder never holds more than one incomplete frame, so this is all it ever buffers."""
MAX_TOPIC_BYTES = 256
"""Topic names travel in subscribe/advertise frames; NATS caps subjects at a similar length."""


class ProtocolError(Exception):
    """Malformed input on one connection; close that connection, nothing else."""


class FrameType(IntEnum):
    DATA = 1  # application message; session, origin, seq, route are meaningful
    PING = 2  # payload echoed back in a PONG; seq is the ping id
    PONG = 3
    HELLO = 4  # first frame on a connection: JSON {"role": "client"|"peer", "dc": ..., "index": ...}
    SUBSCRIBE = 5  # payload: topic (UTF-8)
    UNSUBSCRIBE = 6
    ADVERTISE = 7  # a client will publish on a topic; flags carry its class (DELAY_SENSITIVE)
    UNADVERTISE = 8
    ACK = 9  # the ingress relay accepted DATA (session, origin, seq) sent with ACK_REQUESTED
    REGISTER = 16  # relay -> controller, JSON {"dc": ..., "address": "host:port"}
    REPORT = 17  # relay -> controller, JSON: see `report_payload`
    TABLE = 18  # controller -> relay, JSON: see `table_to_json`
    HEARTBEAT = 19  # relay -> controller, empty
    ERROR = 20  # either way, UTF-8 reason, sent before closing


class Flag(IntFlag):
    NONE = 0
    DELAY_SENSITIVE = 0x01
    """Queued ahead of bulk frames at every hop."""
    RELIABLE = 0x02
    """Full queues pause the publisher; without it (live), full queues drop the oldest frames."""
    ACK_REQUESTED = 0x04
    """The ingress relay answers with ACK (unary publish)."""


KNOWN_TYPES = frozenset(int(t) for t in FrameType)
_TYPES = {int(t): t for t in FrameType}  # a dict lookup is ~10x faster than FrameType(n)


class Frame(NamedTuple):
    """One decoded frame. `payload` may be a memoryview into the input it was parsed from.

    A named tuple, not a dataclass: subscribers decode ~10^5 frames/s, and tuples build fastest.
    """

    type: FrameType
    session: int = 0
    seq: int = 0
    flags: int = 0
    route: int = 0
    origin: int = 0
    payload: bytes | memoryview = b""

    def json(self) -> Any:
        """The payload of a control frame, decoded."""
        try:
            return json.loads(bytes(self.payload))
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError(f"{self.type.name} frame: payload is not JSON: {e}") from None

    def text(self) -> str:
        try:
            return bytes(self.payload).decode()
        except UnicodeDecodeError:
            raise ProtocolError(f"{self.type.name} frame: payload is not UTF-8") from None


def session_id(topic: str) -> int:
    """The 32-bit session id a topic travels under (BLAKE2b, so every process agrees)."""
    return int.from_bytes(hashlib.blake2b(topic.encode(), digest_size=4).digest(), "big")


def header(type_: int, session: int = 0, seq: int = 0, flags: int = 0, route: int = 0,
           origin: int = 0, length: int = 0) -> bytes:
    """A header alone (the payload is written after it, by the caller)."""
    if length > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {length} bytes exceeds MAX_PAYLOAD_BYTES={MAX_PAYLOAD_BYTES}")
    return HEADER.pack(VERSION, type_, flags, route, session, origin, seq, length)


def encode(type_: int, payload: bytes | memoryview = b"", session: int = 0, seq: int = 0,
           flags: int = 0, route: int = 0, origin: int = 0) -> bytes:
    """One frame as bytes."""
    return header(type_, session, seq, flags, route, origin, len(payload)) + payload


def encode_frame(f: Frame) -> bytes:
    return encode(f.type, f.payload, f.session, f.seq, f.flags, f.route, f.origin)


def encode_json(type_: int, obj: Any) -> bytes:
    return encode(type_, json.dumps(obj, separators=(",", ":")).encode())


def parse_header(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, ...]:
    """Validate and unpack the header at `buf[pos:]` (caller checked HEADER_SIZE bytes are there).

    Returns (version, type, flags, route, session, origin, seq, length).
    """
    h = HEADER.unpack_from(buf, pos)
    if h[0] != VERSION:
        raise ProtocolError(f"bad version {h[0]} (expected {VERSION})")
    if h[1] not in KNOWN_TYPES:
        raise ProtocolError(f"unknown frame type {h[1]}")
    if h[7] > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"frame length {h[7]} exceeds MAX_PAYLOAD_BYTES={MAX_PAYLOAD_BYTES}")
    return h


class FrameDecoder:
    """Bytes in, frames out. Complete frames in the input are parsed in place (memoryview
    payloads, no copy); only the trailing incomplete frame is copied, into a buffer that never
    exceeds `MAX_BUFFERED_BYTES`. Payloads stay valid while the caller does not mutate the input.
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self.closed = False

    @property
    def buffered(self) -> int:
        return len(self._partial)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Feed bytes; `b""` means end of stream (raises if it cuts a frame)."""
        if self.closed:
            raise ProtocolError("data after end of stream")
        if not data:
            self.closed = True
            if self._partial:
                raise ProtocolError(f"stream ended mid-frame ({len(self._partial)} bytes buffered)")
            return []
        frames: list[Frame] = []
        view = memoryview(data).cast("B")
        if self._partial:
            view = self._complete_partial(view, frames)
        pos, end = 0, len(view)
        unpack, types, append = HEADER.unpack_from, _TYPES, frames.append
        while end - pos >= HEADER_SIZE:
            ver, typ, flags, route, sess, origin, seq, length = unpack(view, pos)
            if ver != VERSION or length > MAX_PAYLOAD_BYTES or typ not in types:
                parse_header(view, pos)  # raises with the reason
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            append(Frame(types[typ], sess, seq, flags, route, origin, view[pos + HEADER_SIZE:stop]))
            pos = stop
        if pos < end:
            self._partial += view[pos:]
            if len(self._partial) >= HEADER_SIZE:
                parse_header(self._partial, 0)  # fail fast on a bad header, before buffering more
        return frames

    def _complete_partial(self, view: memoryview, frames: list[Frame]) -> memoryview:
        """Top up the buffered incomplete frame from `view`; return the unread rest of `view`."""
        p = self._partial
        if len(p) < HEADER_SIZE:
            take = min(HEADER_SIZE - len(p), len(view))
            p += view[:take]
            view = view[take:]
            if len(p) < HEADER_SIZE:
                return view
        _, typ, flags, route, sess, origin, seq, length = parse_header(p, 0)
        take = min(HEADER_SIZE + length - len(p), len(view))
        p += view[:take]
        view = view[take:]
        if len(p) == HEADER_SIZE + length:
            frames.append(Frame(FrameType(typ), sess, seq, flags, route, origin,
                                bytes(p[HEADER_SIZE:])))
            self._partial = bytearray()
        return view


# -- control payloads ---------------------------------------------------------------------------


def _entry_to_json(e: Entry) -> dict:
    from stemflow.routing.plan import Replicate

    if isinstance(e, Replicate):
        return {"replicate": list(e.next_hops)}
    return {"split": [[h, w] for h, w in e.weights]}


def _entry_from_json(d: Mapping) -> Entry:
    from stemflow.routing.plan import Replicate, Split

    if "replicate" in d:
        return Replicate(tuple(str(h) for h in d["replicate"]))
    if "split" in d:
        return Split(tuple((str(h), float(w)) for h, w in d["split"]))
    raise ProtocolError(f"table entry is neither replicate nor split: {d!r}")


def table_to_json(t: RelayTable, peers: Mapping[str, str]) -> dict:
    """A table push: the relay's forwarding table and the addresses of the other relays."""
    return {
        "relay": t.relay,
        "version": t.version,
        "entries": [{"session": s, "route": r, **_entry_to_json(e)}
                    for (s, r), e in sorted(t.entries.items())],
        "ingress": {s: [[r, w] for r, w in routes] for s, routes in sorted(t.ingress.items())},
        "peers": dict(peers),
    }


def table_from_json(d: Mapping) -> tuple[RelayTable, dict[str, str]]:
    """Inverse of `table_to_json`; raises ProtocolError on a malformed push."""
    from stemflow.routing.plan import RelayTable

    try:
        entries = {(str(e["session"]), int(e["route"])): _entry_from_json(e) for e in d["entries"]}
        ingress = {str(s): tuple((int(r), float(w)) for r, w in routes)
                   for s, routes in d["ingress"].items()}
        table = RelayTable(str(d["relay"]), int(d["version"]), entries, ingress)
        return table, {str(k): str(v) for k, v in d.get("peers", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProtocolError(f"malformed table push: {e!r}") from None


def split_address(addr: str) -> tuple[str, int]:
    """'host:port' -> (host, port), with an error a user can act on."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:7000")
    return host or "127.0.0.1", int(port)
