"""Control messages checked before use: JSON that recursion can handle, fields of the right type
and range. Owns the rules, not what the controller or the relay does with a valid message.

Every check raises `SchemaError` (a `ProtocolError`, so the connection's owner answers with an
ERROR frame and closes that connection alone) with a message that names the field, what was
expected and what came; nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from stemflow.security import SecurityError

MAX_JSON_DEPTH = 32
"""Nesting levels a control message may have. The deepest we send (a table push: object, entries
list, entry, split list, pair) has five; CPython's json recursion fails near a thousand levels
(RecursionError, which took the controller's connection handler down), so 32 leaves room to
grow and stays far from the stack."""
MAX_NAME_CHARS = 64
"""A datacenter (relay) name: cloud region names are under 30 characters (`northamerica-
northeast1` is 23); a certificate's common name is capped at 64 by X.509 (RFC 5280 ub-common-name)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Relay names travel in tables, logs and certificate names: letters, digits, `.`, `_`, `-`."""
MAX_ADDRESS_CHARS = 300
"""A HOST:PORT: a DNS name is at most 253 characters, plus a port."""


class SchemaError(SecurityError):
    """A control message that does not fit its schema."""


def loads(payload: bytes | bytearray | memoryview, what: str) -> Any:
    """The JSON in `payload`, refused before parsing if it nests deeper than MAX_JSON_DEPTH."""
    data = bytes(payload)
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise SchemaError(f"{what}: JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise SchemaError(f"{what}: payload is not JSON: {e}") from None


def json_depth(data: bytes) -> int:
    """The deepest bracket nesting in `data`, ignoring brackets inside strings; stops counting
    once past the limit (a linear scan, no recursion, no allocation per byte)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def relay_name(value: object, field: str = "dc") -> str:
    """A relay's (datacenter's) name, checked."""
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{field}: expected a relay name, got {_short(value)}")
    if len(value) > MAX_NAME_CHARS or not NAME.fullmatch(value):
        raise SchemaError(f"{field}: {_short(value)} is not a relay name (letters, digits, '.', '_', "
                          f"'-', at most {MAX_NAME_CHARS} characters)")
    return value


@dataclass(frozen=True)
class Registration:
    """A REGISTER message: who the relay says it is and where peers dial it."""

    dc: str
    address: str


def registration(body: object) -> Registration:
    if not isinstance(body, dict):
        raise SchemaError(f"REGISTER: expected a JSON object, got {_short(body)}")
    address = body.get("address", "")
    if not isinstance(address, str) or len(address) > MAX_ADDRESS_CHARS:
        raise SchemaError(f"REGISTER: address: expected HOST:PORT, got {_short(address)}")
    return Registration(relay_name(body.get("dc"), "REGISTER: dc"), address)


def measurement(value: object, field: str, most: float = math.inf) -> float | None:
    """A measured quantity: absent (None) or a finite number in [0, most]; anything else (a
    negative RTT, NaN, a string) is refused, not read as "not measured"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"{field}: expected a number, got {_short(value)}")
    if not math.isfinite(value) or not 0 <= value <= most:
        bound = f"[0, {most:g}]" if math.isfinite(most) else "≥ 0 and finite"
        raise SchemaError(f"{field}: {value!r} is out of range (expected {bound})")
    return float(value)


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."
