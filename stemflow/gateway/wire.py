"""The gateway's WebSocket format, sans-IO: browser messages in, gateway messages out.

Owns the layout of every binary WebSocket message between a browser and its gateway (one
message per operation; docs/gateway.md is the reference), the named limits of that format and
the decoder that turns a browser's message into a frozen operation or raises `MalformedMessage`.
What a gateway does with an operation, and in which order operations may come, is
`stemflow.gateway.server`'s.

Every integer is big-endian. A browser message starts with its op byte (`BrowserOp`), a gateway
message with its op byte (`GatewayOp`, high bit set, so a capture tells the two directions apart).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

from stemflow.protocol import MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES
from stemflow.security.schema import SchemaError, loads

VERSION = 1
MAX_WS_MESSAGE_BYTES = MAX_PAYLOAD_BYTES + 1024
"""One relay message (`MAX_PAYLOAD_BYTES`) plus a publish header and the longest topic; the
browser library cuts larger application messages into fragments. The gateway holds at most one
such message per browser while it reads, so this bounds what a browser can make it buffer."""
MAX_HISTORY = 1000
"""Most history messages one subscription may ask for: ten times the chat's 100, and a bound
on what one request can make a relay send."""


class MalformedMessage(Exception):
    """A browser message that does not follow the format; its socket is closed, nothing else."""


class BrowserOp(IntEnum):
    HELLO = 0x01
    PING = 0x02
    SUBSCRIBE = 0x03
    UNSUBSCRIBE = 0x04
    PUBLISH = 0x05


class GatewayOp(IntEnum):
    WELCOME = 0x81
    PONG = 0x82
    MESSAGE = 0x83
    ACK = 0x84
    ERROR = 0x85
    NOTICE = 0x86
    SUBSCRIBED = 0x87


class PublishFlag(IntFlag):
    NONE = 0
    RELIABLE = 0x01
    """Published with `Client.publish` (acknowledged by the ingress relay, never dropped);
    without it, sent on a live stream (slow receivers lose the oldest frames)."""
    DELAY_SENSITIVE = 0x02
    """Queued ahead of bulk traffic at every hop (chat text; not file fragments)."""


class SubscribeFlag(IntFlag):
    NONE = 0
    RELIABLE = 0x01
    """A browser that falls behind is paused at its position (nothing dropped while that
    position is in the topic window); without it, it skips the oldest messages (counted)."""
    FILES_BY_HTTP = 0x02
    """Multi-fragment messages come as one MESSAGE with the FILE flag (the first fragment's
    envelope, body empty), whose body the browser GETs from /files (docs/gateway.md)."""


class MessageFlag(IntFlag):
    NONE = 0
    REPLAYED = 0x01
    """Sent again from the topic window after a reconnection (`since`): may be a duplicate."""
    HISTORY = 0x02
    """One of the topic's past messages asked for with `history`."""
    FILE = 0x04
    """The payload is a multi-fragment message's envelope without its body: GET
    /files/<message id> for the body (SUBSCRIBE with FILES_BY_HTTP only)."""
    TOPIC = 0x08
    """The payload starts with `u8 length` and the topic the message was published on (UTF-8):
    the subscription named a pattern (`chat.*`), so its messages say which topic each is."""


class NoticeKind(IntEnum):
    LIVE_DROPPED = 1
    """`count` messages a slow browser skipped on a live subscription."""
    GAP = 2
    """`count` messages of a reliable subscription are no longer in the window (0: unknown)."""
    HISTORY_UNAVAILABLE = 3
    """The relay could not give the history asked for; `text` says why."""


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses (RFC 6455 section 7.4.1)."""

    PROTOCOL_ERROR = 1002  # malformed or out-of-order message
    UNSUPPORTED_DATA = 1003  # a text message: the format is binary
    POLICY_VIOLATION = 1008  # more subscriptions than a browser may hold
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # the gateway lost its relay
    TRY_AGAIN_LATER = 1013  # the gateway is shutting down


@dataclass(frozen=True)
class Hello:
    version: int
    info: dict[str, Any]


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class Subscribe:
    sub_id: int
    flags: SubscribeFlag
    history: int
    since_ms: float
    """Replay what the window holds from this gateway time on (0: nothing)."""
    topic: str


@dataclass(frozen=True)
class Unsubscribe:
    sub_id: int


@dataclass(frozen=True)
class Publish:
    request_id: int
    """Answered with ACK or ERROR carrying this id; 0 asks for no answer."""
    flags: PublishFlag
    topic: str
    payload: bytes


Operation = Hello | Ping | Subscribe | Unsubscribe | Publish

_U32 = struct.Struct("!I")
_SUBSCRIBE = struct.Struct("!IBHd")
_PUBLISH = struct.Struct("!IBB")
_PONG = struct.Struct("!BId")
_MESSAGE = struct.Struct("!BIBd")
_ACK = struct.Struct("!BI")
_NOTICE = struct.Struct("!BIBI")


def _topic(raw: bytes) -> str:
    if not raw:
        raise MalformedMessage("empty topic")
    if len(raw) > MAX_TOPIC_BYTES:
        raise MalformedMessage(f"topic of {len(raw)} bytes exceeds {MAX_TOPIC_BYTES}")
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise MalformedMessage(f"topic is not UTF-8: {e.reason}") from None


def _fixed(s: struct.Struct, data: bytes, what: str) -> tuple[Any, ...]:
    if len(data) < 1 + s.size:
        raise MalformedMessage(f"{what} needs {1 + s.size} bytes, got {len(data)}")
    return s.unpack_from(data, 1)


def decode(data: bytes) -> Operation:
    """The operation one binary browser message carries; `MalformedMessage` says what is wrong."""
    if not data:
        raise MalformedMessage("empty message")
    if len(data) > MAX_WS_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {MAX_WS_MESSAGE_BYTES}")
    op = data[0]
    if op == BrowserOp.PUBLISH:
        req, flags, n = _fixed(_PUBLISH, data, "PUBLISH")
        start = 1 + _PUBLISH.size
        if flags & ~int(PublishFlag.RELIABLE | PublishFlag.DELAY_SENSITIVE):
            raise MalformedMessage(f"PUBLISH has unknown flags {flags:#x}")
        if len(data) < start + n:
            raise MalformedMessage(f"PUBLISH topic of {n} bytes runs past the message")
        return Publish(req, PublishFlag(flags), _topic(data[start:start + n]), data[start + n:])
    if op == BrowserOp.PING:
        (ping_id,) = _fixed(_U32, data, "PING")
        return Ping(ping_id)
    if op == BrowserOp.SUBSCRIBE:
        sub_id, flags, history, since_ms = _fixed(_SUBSCRIBE, data, "SUBSCRIBE")
        if flags & ~int(SubscribeFlag.RELIABLE | SubscribeFlag.FILES_BY_HTTP):
            raise MalformedMessage(f"SUBSCRIBE has unknown flags {flags:#x}")
        if history > MAX_HISTORY:
            raise MalformedMessage(f"SUBSCRIBE asks for {history} history messages, at most {MAX_HISTORY}")
        if not since_ms >= 0:  # also rejects NaN
            raise MalformedMessage(f"SUBSCRIBE since_ms {since_ms} is not a time")
        return Subscribe(sub_id, SubscribeFlag(flags), history, since_ms,
                         _topic(data[1 + _SUBSCRIBE.size:]))
    if op == BrowserOp.UNSUBSCRIBE:
        (sub_id,) = _fixed(_U32, data, "UNSUBSCRIBE")
        return Unsubscribe(sub_id)
    if op == BrowserOp.HELLO:
        if len(data) < 2:
            raise MalformedMessage("HELLO needs a version byte")
        try:
            info = loads(data[2:] or b"{}", "HELLO info")
        except SchemaError as e:
            raise MalformedMessage(str(e)) from None
        if not isinstance(info, dict):
            raise MalformedMessage("HELLO info is not a JSON object")
        return Hello(data[1], info)
    raise MalformedMessage(f"unknown op {op:#04x}")


# -- gateway messages ------------------------------------------------------------------------------

def welcome(info: dict[str, Any]) -> bytes:
    return bytes([GatewayOp.WELCOME]) + json.dumps(info).encode()


def pong(ping_id: int, gateway_ms: float) -> bytes:
    return _PONG.pack(GatewayOp.PONG, ping_id, gateway_ms)


def message_header(sub_id: int, flags: MessageFlag, received_ms: float, topic: str | None = None) -> bytes:
    """The header of a MESSAGE; the relay message's bytes follow it unchanged. `topic`: the
    concrete topic of a pattern subscription's message (flag TOPIC)."""
    if topic is None:
        return _MESSAGE.pack(GatewayOp.MESSAGE, sub_id, flags, received_ms)
    t = topic.encode()
    head = _MESSAGE.pack(GatewayOp.MESSAGE, sub_id, flags | MessageFlag.TOPIC, received_ms)
    return head + bytes([len(t)]) + t


def ack(request_id: int) -> bytes:
    return _ACK.pack(GatewayOp.ACK, request_id)


def error(request_id: int, reason: str) -> bytes:
    return _ACK.pack(GatewayOp.ERROR, request_id) + reason.encode()[:1024]


def subscribed(sub_id: int) -> bytes:
    return _ACK.pack(GatewayOp.SUBSCRIBED, sub_id)


def notice(sub_id: int, kind: NoticeKind, count: int, text: str = "") -> bytes:
    return _NOTICE.pack(GatewayOp.NOTICE, sub_id, kind, min(count, 0xFFFFFFFF)) + text.encode()[:1024]


# -- browser messages (for Python clients of a gateway: tests, benchmarks, scripted members) ---------

def hello(info: dict[str, Any] | None = None) -> bytes:
    return bytes([BrowserOp.HELLO, VERSION]) + json.dumps(info or {}).encode()


def ping(ping_id: int) -> bytes:
    return bytes([BrowserOp.PING]) + _U32.pack(ping_id)


def subscribe(sub_id: int, topic: str, *, reliable: bool = True, history: int = 0,
              since_ms: float = 0.0, files_by_http: bool = False) -> bytes:
    flags = SubscribeFlag.RELIABLE if reliable else SubscribeFlag.NONE
    if files_by_http:
        flags |= SubscribeFlag.FILES_BY_HTTP
    return bytes([BrowserOp.SUBSCRIBE]) + _SUBSCRIBE.pack(sub_id, flags, history, since_ms) + topic.encode()


def unsubscribe(sub_id: int) -> bytes:
    return bytes([BrowserOp.UNSUBSCRIBE]) + _U32.pack(sub_id)


def publish(request_id: int, topic: str, payload: bytes, *, reliable: bool = True,
            delay_sensitive: bool = False) -> bytes:
    flags = PublishFlag.RELIABLE if reliable else PublishFlag.NONE
    if delay_sensitive:
        flags |= PublishFlag.DELAY_SENSITIVE
    t = topic.encode()
    return bytes([BrowserOp.PUBLISH]) + _PUBLISH.pack(request_id, flags, len(t)) + t + payload


@dataclass(frozen=True)
class Delivered:
    """A gateway MESSAGE as a Python client sees it."""

    sub_id: int
    flags: MessageFlag
    received_ms: float
    payload: bytes
    topic: str | None = None
    """The topic it was published on, when the subscription named a pattern (flag TOPIC)."""


def decode_gateway(data: bytes) -> tuple[GatewayOp, Any]:
    """A gateway message as (op, value), for Python clients; raises `MalformedMessage`."""
    if not data:
        raise MalformedMessage("empty message")
    try:
        op = GatewayOp(data[0])
    except ValueError:
        raise MalformedMessage(f"unknown gateway op {data[0]:#04x}") from None
    try:
        if op is GatewayOp.MESSAGE:
            _, sub_id, flags, received_ms = _MESSAGE.unpack_from(data)
            at, topic = _MESSAGE.size, None
            if flags & MessageFlag.TOPIC:
                end = at + 1 + data[at]
                if end > len(data):
                    raise ValueError("topic runs past the message")
                topic, at = data[at + 1:end].decode(), end
            return op, Delivered(sub_id, MessageFlag(flags), received_ms, data[at:], topic)
        if op is GatewayOp.WELCOME:
            return op, json.loads(data[1:])
        if op is GatewayOp.PONG:
            return op, _PONG.unpack_from(data)[1:]
        if op in (GatewayOp.ACK, GatewayOp.SUBSCRIBED):
            return op, _ACK.unpack_from(data)[1]
        if op is GatewayOp.ERROR:
            return op, (_ACK.unpack_from(data)[1], data[_ACK.size:].decode(errors="replace"))
        _, sub_id, kind, count = _NOTICE.unpack_from(data)
        return op, (sub_id, NoticeKind(kind), count, data[_NOTICE.size:].decode(errors="replace"))
    except (struct.error, ValueError, IndexError) as e:
        raise MalformedMessage(f"bad {op.name}: {e}") from None
