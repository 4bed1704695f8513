"""Client tokens and topic permissions: subject patterns, signing and verification, the relay
core's checks at HELLO / ADVERTISE / SUBSCRIBE and on its timer, and a real relay telling a
client why it was refused."""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stemflow.client import ClientError, connect
from stemflow.protocol import FrameType, ReceiveBuffer, advertise_payload, encode, encode_json, session_id
from stemflow.relay.core import Close, RelayCore, Reply
from stemflow.relay.server import Relay
from stemflow.security.permissions import Authenticator
from stemflow.security.tokens import (
    TokenError,
    init_keys,
    issue_token,
    load_signing_key,
    token_id,
    verify_token,
)
from stemflow.subjects import PatternError, PatternSet, matches, validate_pattern

NOW = 1_800_000_000.0
KEY = Ed25519PrivateKey.generate()


# -- subjects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("chat.*", "chat.room1", True), ("chat.*", "chat.room1.typing", False), ("chat.*", "chat", False),
    ("video.>", "video.4k", True), ("video.>", "video.4k.key", True), ("video.>", "video", False),
    (">", "anything.at.all", True), ("*", "news", True), ("*", "news.eu", False),
    ("a.*.c", "a.b.c", True), ("a.*.c", "a.b.d", False), ("news", "news", True), ("news", "new", False),
    ("chat.*", "chatty.x", False),
])
def test_patterns_match_as_nats_subjects_do(pattern: str, topic: str, expected: bool) -> None:
    assert matches(validate_pattern(pattern), topic) is expected


@pytest.mark.parametrize("bad", ["", "a..b", "a.>.b", "chat.*x", "x>", ".a"])
def test_malformed_patterns_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(PatternError):
        validate_pattern(bad)
    assert PatternSet().covers("x") is False


# -- tokens ------------------------------------------------------------------------------------------


def test_a_token_carries_its_permissions_and_expires() -> None:
    token = issue_token(KEY, "alice", ("chat.*",), ("chat.>",), 3600, NOW)
    claims = verify_token(token, KEY.public_key(), NOW + 10)
    assert claims.subject == "alice" and claims.publish.covers("chat.a")
    assert not claims.publish.covers("video.a") and claims.subscribe.covers("chat.a.b")
    with pytest.raises(TokenError, match="expired"):
        verify_token(token, KEY.public_key(), NOW + 3601)


def test_a_token_from_another_key_or_altered_is_refused() -> None:
    token = issue_token(KEY, "alice", ("a",), (), 60, NOW)
    with pytest.raises(TokenError, match="signature"):
        verify_token(token, Ed25519PrivateKey.generate().public_key(), NOW)
    head, body, sig = token.split(".")
    forged = issue_token(KEY, "alice", (">",), (">",), 60, NOW).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verify_token(f"{head}.{forged}.{sig}", KEY.public_key(), NOW)
    for junk in (None, "", "not-a-jwt", 42):
        with pytest.raises(TokenError):
            verify_token(junk, KEY.public_key(), NOW)


def test_keys_init_writes_a_private_signing_key_and_refuses_to_replace_it(tmp_path) -> None:
    signing, verify = init_keys(tmp_path)
    assert signing.stat().st_mode & 0o077 == 0
    assert isinstance(load_signing_key(signing), Ed25519PrivateKey)
    with pytest.raises(FileExistsError):
        init_keys(tmp_path)


# -- the relay core's checks -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def _core() -> tuple[RelayCore, Clock]:
    clock = Clock()
    return RelayCore("a", auth=Authenticator(KEY.public_key(), clock)), clock


def _feed(core: RelayCore, conn, data: bytes, now: float = 0.0) -> list:
    rb = ReceiveBuffer()
    rb.get_buffer()[:len(data)] = data
    rb.updated(len(data))
    return core.receive(conn, rb, now)


def _hello(token: str | None) -> bytes:
    return encode_json(FrameType.HELLO, {"role": "client"} if token is None
                       else {"role": "client", "token": token})


def _closes(actions: list) -> list[str]:
    return [a.reason for a in actions if isinstance(a, Close)]


def test_the_relay_refuses_a_client_without_a_valid_token_and_counts_it() -> None:
    core, _ = _core()
    assert _closes(_feed(core, core.connection(), _hello(None))) == [
        "authentication required: HELLO carries no token"]
    expired = issue_token(KEY, "eve", (">",), (">",), 60, NOW - 120)
    assert "expired" in _closes(_feed(core, core.connection(), _hello(expired)))[0]
    other = issue_token(Ed25519PrivateKey.generate(), "eve", (">",), (">",), 60, NOW)
    assert "signature" in _closes(_feed(core, core.connection(), _hello(other)))[0]
    assert core.counters["refused_token"] == 3


def test_publish_and_subscribe_outside_the_token_are_refused_inside_allowed() -> None:
    core, _ = _core()
    token = issue_token(KEY, "alice", ("chat.*",), ("video.>",), 60, NOW)

    def client() -> object:
        conn = core.connection()
        assert any(isinstance(a, Reply) for a in _feed(core, conn, _hello(token)))
        return conn

    c = client()
    ok = _feed(core, c, encode(FrameType.ADVERTISE, advertise_payload("chat.room1"),
                               session=session_id("chat.room1"))
               + encode(FrameType.SUBSCRIBE, b"video.4k.key", session=session_id("video.4k.key")))
    assert _closes(ok) == [] and c.advertised and c.subscribed
    refused = _closes(_feed(core, client(), encode(FrameType.ADVERTISE, advertise_payload("chat.a.b"),
                                                   session=session_id("chat.a.b"))))
    assert refused == ["permission denied: publish to 'chat.a.b' (token allows: chat.*)"]
    refused = _closes(_feed(core, client(), encode(FrameType.SUBSCRIBE, b"chat.room1",
                                                   session=session_id("chat.room1"))))
    assert refused == ["permission denied: subscribe to 'chat.room1' (token allows: video.>)"]
    assert (core.counters["denied_publish"], core.counters["denied_subscribe"]) == (1, 1)


def test_an_expired_or_revoked_token_ends_its_connection_on_the_relay_timer() -> None:
    core, clock = _core()
    short = issue_token(KEY, "a", (">",), (">",), 30, NOW)
    long = issue_token(KEY, "b", (">",), (">",), 3600, NOW)
    c1, c2 = core.connection(), core.connection()
    _feed(core, c1, _hello(short), now=100.0)
    _feed(core, c2, _hello(long), now=100.0)
    assert _closes(core.tick(129.0)) == []
    closes = [a for a in core.tick(130.5) if isinstance(a, Close)]
    assert [(a.conn, a.reason) for a in closes] == [(c1, "token expired")]
    core.auth.revoke([core.auth.grants[c2].claims.token_id])
    assert _closes(core.tick(131.0)) == ["token revoked"]
    assert "revoked" in _closes(_feed(core, core.connection(), _hello(long), now=132.0))[0]
    assert core.counters["closed_token_expired"] == core.counters["closed_token_revoked"] == 1


# -- a real relay, a real client ------------------------------------------------------------------------


def test_a_client_is_told_why_the_relay_refused_it() -> None:
    async def run() -> None:
        relay = Relay("a", "127.0.0.1:0", "127.0.0.1:9", auth=Authenticator(KEY.public_key()))
        addr = await relay.start()
        try:
            with pytest.raises(ClientError, match="authentication required"):
                await connect(addr, timeout_s=2)
            token = issue_token(KEY, "alice", ("chat.*",), ("chat.*",), 60, time.time())
            c = await connect(addr, timeout_s=2, token=token)
            sub = await c.subscribe("chat.room1")
            s = c.open_stream("chat.room1")
            await s.write(b"hello")
            assert (await sub.get(2)).data == b"hello"
            denied = r"permission denied: subscribe to 'news' \(token allows: chat\.\*\)"
            with pytest.raises(ClientError, match=denied):
                await c.subscribe("news")
        finally:
            await relay.stop()

    asyncio.run(run())


def test_a_revocation_file_refuses_its_tokens_and_ends_their_connections(tmp_path) -> None:
    revoked = tmp_path / "revoked.txt"
    clock = Clock()
    core = RelayCore("a", auth=Authenticator(KEY.public_key(), clock, revocations=revoked))
    kept, gone = (issue_token(KEY, n, (">",), (">",), 3600, NOW) for n in ("kept", "gone"))
    c1, c2 = core.connection(), core.connection()
    _feed(core, c1, _hello(kept), now=10.0)
    _feed(core, c2, _hello(gone), now=10.0)
    revoked.write_text(f"# revoked 2026-12-07\n{token_id(gone)}  # leaked\n")
    closes = [a for a in core.tick(12.0) if isinstance(a, Close)]
    assert [(a.conn, a.reason) for a in closes] == [(c2, "token revoked")]
    assert _closes(_feed(core, core.connection(), _hello(gone), now=12.5)) == ["token revoked"]
    revoked.write_text("")  # taken back
    core.tick(14.0)
    assert _closes(_feed(core, core.connection(), _hello(gone), now=14.5)) == []
