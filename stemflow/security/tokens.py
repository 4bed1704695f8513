"""Client credentials: signed, expiring tokens (JWT, Ed25519) that carry topic permissions.

Owns the key files, the token's claims and their signing and verification; what a verified
token lets a connection do is `permissions`'s. The claims follow NATS's user JWTs in spirit
(`pub`/`sub` allow lists of subject patterns) under a `stemflow` claim:

    {"sub": "alice", "iat": ..., "exp": ..., "jti": "<random id>",
     "stemflow": {"pub": {"allow": ["chat.*"]}, "sub": {"allow": ["chat.>"]}}}

Ed25519 (RFC 8032; JWS algorithm "EdDSA", RFC 8037): relays hold only the public key, so a relay
that is broken into cannot mint tokens. Times are wall-clock seconds (JWT NumericDate, RFC 7519
§2); callers pass `now` so tests need no clock.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stemflow.security import SecurityError
from stemflow.subjects import PatternError, PatternSet

ALGORITHM = "EdDSA"
CLAIM = "stemflow"
SIGNING_KEY_FILE = "signing.key"
VERIFY_KEY_FILE = "verify.pem"
MAX_TOKEN_CHARS = 8192
"""A token rides in HELLO: a few hundred bytes with a dozen patterns; more is not a token."""
MAX_PATTERNS = 256
"""Patterns per direction in one token: each is tried on every new topic a connection names."""


class TokenError(SecurityError):
    """A token that cannot be used; the message is the reason told to the client."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    subject: str
    publish: PatternSet
    subscribe: PatternSet
    expires_at: float
    """Wall-clock seconds (Unix time)."""
    token_id: str


# -- keys ------------------------------------------------------------------------------------------


def init_keys(directory: str | Path) -> tuple[Path, Path]:
    """Make a new Ed25519 key pair in `directory`: the signing key (owner-only) and the verify
    key relays and gateways are given. Refuses to overwrite an existing signing key."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    signing, verify = d / SIGNING_KEY_FILE, d / VERIFY_KEY_FILE
    if signing.exists():
        raise FileExistsError(f"{signing} exists; refusing to replace a signing key (move it away first)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(signing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    verify.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return signing, verify


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(_read(path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key (make one with 'stemflow keys init')")
    return key


def load_verify_key(path: str | Path) -> Ed25519PublicKey:
    """The public key from a verify key file (or from a signing key file, for convenience)."""
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key (make one with 'stemflow keys init')")
    return key


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the key file: {e.strerror}") from None


# -- tokens ----------------------------------------------------------------------------------------


def issue_token(key: Ed25519PrivateKey, subject: str, publish: tuple[str, ...],
                subscribe: tuple[str, ...], ttl_s: float, now: float) -> str:
    """A signed token for `subject` valid `ttl_s` seconds from `now`."""
    if not ttl_s > 0:
        raise ValueError(f"a token's lifetime must be > 0 s, got {ttl_s}")
    PatternSet(publish), PatternSet(subscribe)  # noqa: B018 - validates, raising PatternError
    claims = {"sub": subject, "iat": int(now), "exp": int(now + ttl_s), "jti": secrets.token_hex(8),
              CLAIM: {"pub": {"allow": list(publish)}, "sub": {"allow": list(subscribe)}}}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def token_id(token: str) -> str:
    """The id (`jti`) of a token, read without verifying it: for the issuer's records."""
    return str(jwt.decode(token, options={"verify_signature": False}).get("jti", ""))


def verify_token(token: object, key: Ed25519PublicKey, now: float) -> Claims:
    """The claims of a valid token; `TokenError` with the reason otherwise."""
    if not isinstance(token, str) or not token:
        raise TokenError("authentication required: HELLO carries no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError(f"token longer than {MAX_TOKEN_CHARS} characters")
    try:
        body = jwt.decode(token, key, algorithms=[ALGORITHM],
                          options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                   "require": ["exp", "sub", "jti"]})  # times: checked below, at `now`
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is not valid for this overlay's key") from None
    except jwt.PyJWTError as e:
        raise TokenError(f"token is malformed: {e}") from None
    exp = body["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("token is malformed: exp is not a time")
    if exp <= now:
        raise TokenError(f"token expired {now - exp:.0f} s ago")
    perms = body.get(CLAIM)
    try:
        publish = PatternSet(_allow(perms, "pub"))
        subscribe = PatternSet(_allow(perms, "sub"))
    except PatternError as e:
        raise TokenError(f"token is malformed: {e}") from None
    return Claims(str(body["sub"]), publish, subscribe, float(exp), str(body["jti"]))


def _allow(perms: object, direction: str) -> tuple[str, ...]:
    allow = perms.get(direction, {}).get("allow", []) if isinstance(perms, dict) \
        and isinstance(perms.get(direction, {}), dict) else None
    if not isinstance(allow, list) or len(allow) > MAX_PATTERNS \
            or not all(isinstance(p, str) for p in allow):
        raise TokenError(f"token is malformed: {CLAIM}.{direction}.allow is not a list of patterns "
                         f"(at most {MAX_PATTERNS})")
    return tuple(allow)
