"""Safe defaults: a process that listens beyond loopback must say how it keeps strangers out.

Owns the rule, as Redis's protected mode does: listening on a loopback address needs nothing
(the testbed's default, so every local run works as before); listening anywhere else needs the
process's credentials, or `--insecure` given explicitly, and the refusal says which flags fix it.
"""

from __future__ import annotations

import hmac
import ipaddress

from stemflow.protocol import split_address

LOOPBACK_NAMES = ("localhost",)


def is_loopback(listen: str) -> bool:
    """Whether `HOST:PORT` binds only the loopback interface (`split_address` reads an empty
    host as 127.0.0.1)."""
    host = split_address(listen)[0].strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve to anything


def exposure_refusal(listen: str, flag: str, missing: list[str]) -> str | None:
    """Why a process must not listen on `listen` (given as `flag`) lacking the credential flags
    in `missing`, or None when it may (loopback, or nothing missing)."""
    if not missing or is_loopback(listen):
        return None
    return (f"{flag} {listen} is reachable from other hosts, and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not given; give {'them' if len(missing) > 1 else 'it'} "
            "(see docs/security.md), or --insecure to run open anyway")


def bearer_matches(request_head: bytes, secret: str) -> bool:
    """Whether an HTTP request head carries `Authorization: Bearer <secret>` (RFC 6750 §2.1),
    compared in constant time so the secret cannot be guessed byte by byte from timings."""
    for line in request_head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            scheme, _, given = value.strip().partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), secret.encode())
    return False
