"""Message headers: name/value pairs a message carries beside its data (NATS's HPUB, HTTP's fields).

A DATA frame whose flags have `Flag.HEADERS` starts its payload with a header block, then the
data: a 2-byte big-endian length of the block, and the block itself as UTF-8 lines
`Name: value\\r\\n`. Relays never read it (they forward payloads whole); only clients and the
gateway do. Names are tokens as in HTTP (letters, digits, `!#$%&'*+-.^_`|~`), compared as given;
values are any text without CR or LF. A message without headers carries no block at all, so
the common case costs nothing.

Request/reply (`Client.request`, `Client.respond`) rides on two headers: `REPLY_TO`, the topic
the requester listens on, and `REQUEST_ID`, which the reply copies so the requester can match it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping

from stemflow.protocol import ProtocolError

MAX_HEADER_BYTES = 16 << 10
"""A header block beyond this is refused: headers describe a message, they are not its data."""
REPLY_TO = "Stemflow-Reply-To"
REQUEST_ID = "Stemflow-Request-Id"

_LEN = struct.Struct("!H")
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class HeaderError(ValueError):
    """A header name or value that cannot be sent."""


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The header block (with its length) that precedes the data; raises HeaderError."""
    lines = []
    for name, value in headers.items():
        if not _NAME.fullmatch(name):
            raise HeaderError(f"header name {name!r}: use letters, digits and !#$%&'*+-.^_`|~")
        value = str(value)
        if "\r" in value or "\n" in value:
            raise HeaderError(f"header {name!r}: a value cannot hold a line break")
        lines.append(f"{name}: {value}\r\n")
    block = "".join(lines).encode()
    if len(block) > MAX_HEADER_BYTES:
        raise HeaderError(f"headers of {len(block)} bytes exceed the {MAX_HEADER_BYTES}-byte limit")
    return _LEN.pack(len(block)) + block


def decode_headers(payload: bytes | memoryview) -> tuple[dict[str, str], bytes]:
    """(headers, data) of a payload that starts with a header block; ProtocolError if malformed."""
    if len(payload) < _LEN.size:
        raise ProtocolError("header block cut short")
    (n,) = _LEN.unpack_from(payload)
    if n > MAX_HEADER_BYTES or _LEN.size + n > len(payload):
        raise ProtocolError(f"header block of {n} bytes does not fit its frame")
    try:
        text = bytes(payload[_LEN.size:_LEN.size + n]).decode()
    except UnicodeDecodeError as e:
        raise ProtocolError(f"header block is not UTF-8: {e}") from None
    headers: dict[str, str] = {}
    for line in text.split("\r\n")[:-1] if text else ():
        name, sep, value = line.partition(": ")
        if not sep or not _NAME.fullmatch(name):
            raise ProtocolError(f"malformed header line {line[:60]!r}")
        headers[name] = value
    if text and not text.endswith("\r\n"):
        raise ProtocolError("header block does not end with a line break")
    return headers, bytes(payload[_LEN.size + n:])
