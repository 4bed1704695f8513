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
from collections.abc import Iterator, Mapping
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
    CREDIT = 10  # relay -> upstream relay: (session, route) may send `seq` more reliable bytes
    HISTORY_REQUEST = 11  # client or relay -> relay: `history_request_payload`; seq = request id
    HISTORY = 12  # one past message: session, origin, seq, flags as its DATA had; payload its payload
    HISTORY_END = 13  # ends an answer: seq = request id; JSON, see `history_end_payload`
    TOPIC = 14  # relay -> client: payload the topic (UTF-8) of `session`, before the first DATA
    #            of it that a pattern subscription brings (its frames carry only the session id)
    REGISTER = 16  # relay -> controller, JSON {"dc": ..., "address": "host:port"}
    REPORT = 17  # relay -> controller, JSON: see `report_payload`
    TABLE = 18  # controller -> relay, JSON: see `table_to_json`
    HEARTBEAT = 19  # relay -> controller, empty
    ERROR = 20  # either way, UTF-8 reason, sent before closing
    DELIVERED = 24  # end-to-end ack of a reliable (session, origin): every seq below `seq` delivered
    # (egress relay -> every peer; ingress relay -> publishing client); see `relay/acks.py`


class Flag(IntFlag):
    NONE = 0
    DELAY_SENSITIVE = 0x01
    """Queued ahead of bulk frames at every hop."""
    RELIABLE = 0x02
    """Full queues pause the publisher; without it (live), full queues drop the oldest frames."""
    ACK_REQUESTED = 0x04
    """The ingress relay answers with ACK (unary publish)."""
    DROPPED = 0x08
    """On an ACK: the relay accepted the message and nobody subscribes to its topic, here or at
    another relay, so it went nowhere (NATS's "no responders", for a publish)."""
    HEADERS = 0x10
    """On DATA: the payload starts with a header block (`stemflow.headers`); relays ignore it."""
    RESEND = 0x20
    """On DELIVERED to a client: a relay on the session's routes was lost, so send again every
    message of the session not yet acknowledged (egress relays drop the copies they have)."""
    EGRESS = 0x40
    """On DELIVERED between relays: the sender delivers the session to subscribers of its own
    (seq and origin are 0); with GONE, it does not any more."""
    GONE = 0x80


KNOWN_TYPES = frozenset(int(t) for t in FrameType)
DATA_TYPE = int(FrameType.DATA)
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
        """The payload of a control frame, decoded (nesting bounded: `security.schema.loads`)."""
        from stemflow.security.schema import loads  # imports this module: bound at call time

        return loads(self.payload, f"{self.type.name} frame")

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


def data_header(session: int, seq: int, flags: int, origin: int, length: int) -> bytes:
    """A DATA frame's header, unchecked: for publishers that checked `length` already."""
    return HEADER.pack(VERSION, DATA_TYPE, flags, 0, session, origin, seq, length)


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


RECV_BUFFER_BYTES = 256 << 10
"""Initial receive buffer per connection: a few 64 KiB frames per read; grown to fit one frame
up to MAX_PAYLOAD_BYTES."""
MIN_READ_BYTES = 64 << 10
"""Compact the receive buffer when less than this is free at its end: a read smaller than one
64 KiB frame would cost a syscall per frame."""
ROUTE_OFFSET = 3
"""Where the route byte lies in a header: the ingress relay writes its route choice in place."""
FLAGS_OFFSET = 2
_LENGTH = struct.Struct("!I")
_LENGTH_OFFSET = 20


class ReceiveBuffer:
    """One connection's receive buffer, parsed in place (the h11 `ReceiveBuffer` idea).

    The owner of a `BufferedProtocol` hands `get_buffer()` to the transport, calls `updated(n)`,
    then iterates `frames()`: each complete frame as its header fields and its byte range in
    `buf`, so payloads can be forwarded or delivered without a copy. `consumed()` after the
    scan keeps the incomplete tail for the next read. This is the one place that knows the
    header layout; nobody else writes header offsets by hand.
    """

    __slots__ = ("buf", "view", "start", "end", "lent")

    def __init__(self) -> None:
        self.buf = bytearray(RECV_BUFFER_BYTES)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.lent = False
        """A transport kept a view into `buf` (the socket took only part of a run written
        without a copy): Python 3.12+'s asyncio and uvloop keep the view, not a copy, so the
        buffer must not be written again; the next read goes to a fresh one."""

    def __len__(self) -> int:
        return self.end - self.start

    def get_buffer(self) -> memoryview:
        """Free space for the next read; room for the whole incomplete frame is made first."""
        if len(self.buf) - self.end < MIN_READ_BYTES:
            need = 0
            if self.end - self.start >= HEADER_SIZE:
                length = _LENGTH.unpack_from(self.buf, self.start + _LENGTH_OFFSET)[0]
                need = HEADER_SIZE + min(length, MAX_PAYLOAD_BYTES) + MIN_READ_BYTES
            self._make_room(need)
        return self.view[self.end:]

    def updated(self, nbytes: int) -> None:
        self.end += nbytes

    def frames(self) -> Iterator[tuple[int, int, int, int, int, int, int, int]]:
        """Complete frames from `start`: (type, flags, route, session, origin, seq, pos, stop),
        the frame being `buf[pos:stop]` and its payload `buf[pos + HEADER_SIZE:stop]`.

        `start` advances past each frame once the consumer asks for the next one, so a
        consumer that stops (or raises) on a frame leaves it unconsumed. Raises ProtocolError
        on a malformed header."""
        buf, end, unpack, types = self.buf, self.end, HEADER.unpack_from, _TYPES
        pos = self.start
        while end - pos >= HEADER_SIZE:
            ver, typ, flags, route, sess, origin, seq, length = unpack(buf, pos)
            if ver != VERSION or length > MAX_PAYLOAD_BYTES or typ not in types:
                parse_header(buf, pos)  # raises with the reason
            stop = pos + HEADER_SIZE + length
            if stop > end:
                return
            yield typ, flags, route, sess, origin, seq, pos, stop
            pos = self.start = stop

    def payload(self, pos: int, stop: int) -> bytes:
        """A copy of the payload of the frame at `buf[pos:stop]`."""
        return bytes(self.buf[pos + HEADER_SIZE:stop])

    def set_route(self, pos: int, route: int) -> None:
        """Write the ingress relay's route choice into the frame at `pos`."""
        self.buf[pos + ROUTE_OFFSET] = route

    def consumed(self) -> None:
        """After a scan: start over at the front when empty, or in a fresh buffer when lent."""
        if self.lent:
            n = self.end - self.start
            buf = bytearray(max(RECV_BUFFER_BYTES, n + MIN_READ_BYTES))
            buf[:n] = self.buf[self.start:self.end]
            self.buf, self.view = buf, memoryview(buf)
            self.start, self.end = 0, n
            self.lent = False
        elif self.start == self.end:
            self.start = self.end = 0

    def clear(self) -> None:
        self.start = self.end = 0

    def _make_room(self, need: int) -> None:
        """Move the incomplete frame to the front; grow the buffer if a frame cannot fit."""
        n = self.end - self.start
        size = max(len(self.buf), need)
        if size > len(self.buf):
            buf = bytearray(size)
            buf[:n] = self.buf[self.start:self.end]
            self.buf, self.view = buf, memoryview(buf)
        elif self.start:
            self.buf[:n] = self.buf[self.start:self.end]
        self.start, self.end = 0, n


def frame_route(frame: bytes | bytearray | memoryview) -> int:
    """The route byte of one whole frame."""
    return frame[ROUTE_OFFSET]


def frame_flags(frame: bytes | bytearray | memoryview) -> int:
    return frame[FLAGS_OFFSET]


def frame_ids(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(session, origin, seq) of one whole frame."""
    h = HEADER.unpack_from(frame, 0)
    return h[4], h[5], h[6]


def set_frame_route(frame: bytearray, route: int) -> None:
    frame[ROUTE_OFFSET] = route


_TYPE_OFFSET = 1


def retyped(frame: bytes | bytearray | memoryview, type_: int) -> bytes:
    """A copy of one whole frame with another type (a DATA frame kept as HISTORY), route 0."""
    out = bytearray(frame)
    out[_TYPE_OFFSET] = type_
    out[ROUTE_OFFSET] = 0
    return bytes(out)


def frame_spans(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
    """(start, stop) of each whole frame in a run of whole frames (as a relay delivers them)."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < HEADER_SIZE:
            raise ProtocolError(f"run of frames ends {end - pos} bytes into a header")
        stop = pos + HEADER_SIZE + _LENGTH.unpack_from(data, pos + _LENGTH_OFFSET)[0]
        if stop > end:
            raise ProtocolError("run of frames ends inside a payload")
        yield pos, stop
        pos = stop


class FrameDecoder:
    """Bytes in, frames out, for connections that parse frames one by one (control links,
    tests): the bytes go through a `ReceiveBuffer` and payloads come out as copies, never
    more than `MAX_BUFFERED_BYTES` of an incomplete frame held."""

    def __init__(self) -> None:
        self._rb = ReceiveBuffer()
        self.closed = False

    @property
    def buffered(self) -> int:
        return len(self._rb)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Feed bytes; `b""` means end of stream (raises if it cuts a frame)."""
        if self.closed:
            raise ProtocolError("data after end of stream")
        rb = self._rb
        if not data:
            self.closed = True
            if len(rb):
                raise ProtocolError(f"stream ended mid-frame ({len(rb)} bytes buffered)")
            return []
        frames: list[Frame] = []
        view = memoryview(data).cast("B")
        while view:
            space = rb.get_buffer()
            n = min(len(space), len(view))
            space[:n] = view[:n]
            view = view[n:]
            rb.updated(n)
            frames += [Frame(_TYPES[typ], sess, seq, flags, route, origin, rb.payload(pos, stop))
                       for typ, flags, route, sess, origin, seq, pos, stop in rb.frames()]
            if len(rb) >= HEADER_SIZE:
                parse_header(rb.buf, rb.start)  # fail fast on a bad header, before buffering more
            rb.consumed()
        return frames


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
        "rates": [[s, r, round(v, 3)] for (s, r), v in sorted(t.rates.items())],
        "peers": dict(peers),
    }


def table_from_json(d: Mapping) -> tuple[RelayTable, dict[str, str]]:
    """Inverse of `table_to_json`; raises ProtocolError on a malformed push."""
    from stemflow.routing.plan import RelayTable

    try:
        entries = {(str(e["session"]), int(e["route"])): _entry_from_json(e) for e in d["entries"]}
        ingress = {str(s): tuple((int(r), float(w)) for r, w in routes)
                   for s, routes in d["ingress"].items()}
        rates = {(str(s), int(r)): float(v) for s, r, v in d.get("rates", ())}
        table = RelayTable(str(d["relay"]), int(d["version"]), entries, ingress, rates)
        return table, {str(k): str(v) for k, v in d.get("peers", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProtocolError(f"malformed table push: {e!r}") from None


_HISTORY_COUNT = struct.Struct("!I")


def history_request_payload(topic: str, count: int) -> bytes:
    """HISTORY_REQUEST's payload: how many past messages (u32), then the topic (UTF-8)."""
    return _HISTORY_COUNT.pack(count) + topic.encode()


def parse_history_request(payload: bytes | memoryview) -> tuple[str, int]:
    """Inverse of `history_request_payload`."""
    raw = bytes(payload)
    if len(raw) < _HISTORY_COUNT.size + 1:
        raise ProtocolError("HISTORY_REQUEST: shorter than a count and a topic")
    if len(raw) - _HISTORY_COUNT.size > MAX_TOPIC_BYTES:
        raise ProtocolError(f"HISTORY_REQUEST: topic longer than {MAX_TOPIC_BYTES} bytes")
    try:
        topic = raw[_HISTORY_COUNT.size:].decode()
    except UnicodeDecodeError:
        raise ProtocolError("HISTORY_REQUEST: topic is not UTF-8") from None
    return topic, _HISTORY_COUNT.unpack_from(raw)[0]


def history_end_payload(count: int, covered_s: float, complete: bool, error: str = "") -> bytes:
    """HISTORY_END's payload: how many HISTORY frames came before it, how long the answering
    store has recorded the topic without a break, whether it holds all its rule keeps; or why
    there is no history (`error`)."""
    body: dict[str, Any] = {"error": error} if error else {
        "count": count, "covered_s": round(covered_s, 3), "complete": complete}
    return json.dumps(body, separators=(",", ":")).encode()


ADVERTISE_OPTIONS = ("max_rate_mbps", "latency_budget_ms")
"""What a publisher may tell the overlay about its session besides its class (the flags): the
rate it will not exceed and the one-way delay it can bear. The controller plans with them."""


def advertise_payload(topic: str, **options: float | None) -> bytes:
    """ADVERTISE's payload: the topic, then the publisher's stated options as JSON after a NUL."""
    given = {k: float(v) for k, v in options.items() if v is not None}
    unknown = set(given) - set(ADVERTISE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown advertise options {sorted(unknown)}; known: {ADVERTISE_OPTIONS}")
    body = topic.encode()
    return body + b"\0" + json.dumps(given, separators=(",", ":")).encode() if given else body


def parse_advertise(payload: bytes) -> tuple[str, dict[str, float]]:
    """Inverse of `advertise_payload`; only known, finite, non-negative options are kept."""
    raw, _, opts = bytes(payload).partition(b"\0")
    if len(raw) > MAX_TOPIC_BYTES:
        raise ProtocolError(f"topic longer than {MAX_TOPIC_BYTES} bytes")
    try:
        topic = raw.decode()
        given = json.loads(opts) if opts else {}
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("ADVERTISE: topic is not UTF-8 or options are not JSON") from None
    if not isinstance(given, dict):
        raise ProtocolError("ADVERTISE: options are not a JSON object")
    options = {}
    for k in ADVERTISE_OPTIONS:
        v = given.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < float("inf"):
            options[k] = float(v)
    return topic, options


def split_address(addr: str) -> tuple[str, int]:
    """'host:port' -> (host, port), with an error a user can act on."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:7000")
    return host or "127.0.0.1", int(port)
