"""The gateway's sans-IO parts: the WebSocket format and the topic window's policies."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stemflow.gateway import envelope, wire
from stemflow.gateway.window import LIVE_LAG_BYTES, Reader, Window
from stemflow.protocol import MAX_TOPIC_BYTES


def test_browser_operations_round_trip():
    assert wire.decode(wire.hello({"app": "chat"})) == wire.Hello(wire.VERSION, {"app": "chat"})
    assert wire.decode(wire.ping(7)) == wire.Ping(7)
    assert wire.decode(wire.subscribe(3, "chat/général", reliable=False, history=100, since_ms=1.5)) == \
        wire.Subscribe(3, wire.SubscribeFlag.NONE, 100, 1.5, "chat/général")
    assert wire.decode(wire.unsubscribe(3)) == wire.Unsubscribe(3)
    assert wire.decode(wire.publish(9, "t", b"\x00body", delay_sensitive=True)) == \
        wire.Publish(9, wire.PublishFlag.RELIABLE | wire.PublishFlag.DELAY_SENSITIVE, "t", b"\x00body")


def test_gateway_messages_decode():
    op, d = wire.decode_gateway(wire.message_header(5, wire.MessageFlag.REPLAYED, 12.5) + b"xyz")
    assert op is wire.GatewayOp.MESSAGE and d == wire.Delivered(5, wire.MessageFlag.REPLAYED, 12.5, b"xyz")
    op, d = wire.decode_gateway(wire.message_header(5, wire.MessageFlag.NONE, 1.0, "chat.général") + b"xyz")
    assert d == wire.Delivered(5, wire.MessageFlag.TOPIC, 1.0, b"xyz", "chat.général")
    for cut in (wire.message_header(5, wire.MessageFlag.TOPIC, 1.0),
                wire.message_header(5, wire.MessageFlag.NONE, 1.0, "abc")[:-1]):
        with pytest.raises(wire.MalformedMessage, match="bad MESSAGE"):
            wire.decode_gateway(cut)
    assert wire.decode_gateway(wire.notice(2, wire.NoticeKind.GAP, 4, "gone")) == \
        (wire.GatewayOp.NOTICE, (2, wire.NoticeKind.GAP, 4, "gone"))
    assert wire.decode_gateway(wire.error(8, "no")) == (wire.GatewayOp.ERROR, (8, "no"))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty message"),
    (b"\x09", "unknown op"),
    (b"\x03\x00\x00", "SUBSCRIBE needs"),
    (wire.subscribe(1, "t")[:16], "empty topic"),
    (b"\x03" + bytes(4) + b"\x80" + bytes(10) + b"t", "unknown flags"),
    (wire.subscribe(1, "x" * (MAX_TOPIC_BYTES + 1)), "exceeds"),
    (wire.subscribe(1, "t")[:16] + b"\xff\xfe", "not UTF-8"),
    (b"\x03" + bytes(5) + (wire.MAX_HISTORY + 1).to_bytes(2, "big") + bytes(8) + b"t", "history"),
    (b"\x03" + struct.pack("!IBHd", 1, 0, 0, math.nan) + b"t", "not a time"),
    (b"\x05" + bytes(4) + b"\x00\x09t", "runs past"),
    (b"\x01\x01not json", "not JSON"),
    (b"\x01\x01[1]", "not a JSON object"),
    (b"\x05" + bytes(wire.MAX_WS_MESSAGE_BYTES), "exceeds"),
])
def test_malformed_messages_say_what_is_wrong(data, reason):
    with pytest.raises(wire.MalformedMessage, match=reason):
        wire.decode(data)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_malformed(data):
    with contextlib.suppress(wire.MalformedMessage):
        wire.decode(data)


def test_live_reader_skips_the_oldest_and_counts():
    w = Window(0.0)
    r = Reader(w, reliable=False)
    for i in range(40):
        w.append(bytes(64 << 10), float(i))
    entry, skipped = r.take()
    assert skipped is not None and not skipped.reliable
    kept = 40 - skipped.count
    assert kept * (64 << 10) <= LIVE_LAG_BYTES < (kept + 1) * (64 << 10)
    assert entry.index == skipped.count
    n = 1
    while r.pending:
        assert r.take()[1] is None
        n += 1
    assert n == kept


def test_reliable_reader_waits_and_a_position_past_the_window_is_a_gap():
    w = Window(0.0, window_bytes=10 << 10)
    r = Reader(w, reliable=True)
    for i in range(5):
        w.append(bytes(1 << 10), float(i))
    assert [r.take() for _ in range(5)][-1][0].index == 4  # nothing skipped within the window
    for i in range(30):
        w.append(bytes(1 << 10), 10.0 + i)
    entry, skipped = r.take()
    assert skipped is not None and skipped.reliable and skipped.count == 20  # ten kept of thirty
    assert entry.index == 25


def test_window_expires_by_age_and_finds_a_resume_point():
    w = Window(0.0, window_s=1.0)
    for t in (0.0, 400.0, 800.0, 900.0):
        w.append(b"m", t)
    assert w.first == 0 and w.index_since(500.0) == 2
    w.expire(1300.0)
    assert w.first == 1 and w.oldest_ms == 400.0
    w.expire(10_000.0)
    assert len(w.entries) == 1  # the newest always stays
    assert Reader(w, True, position=w.index_since(0.0)).replay_until == w.end


def test_envelope_fragments_reassemble_once():
    body = bytes(range(256)) * 2100  # 537 600 bytes: three fragments
    sender = bytes(range(8))
    frags = envelope.fragments(sender, 7, body, sent_ms=12.5, dc="us-east1", meta='{"name": "Ann"}')
    assert len(frags) == 3
    a = envelope.Assembler()
    decoded = [envelope.decode(f) for f in frags]
    assert decoded[0].message_id == "0001020304050607:7" and decoded[0].dc == "us-east1"
    assert [a.add(decoded[2]), a.add(decoded[0])] == [None, None]
    assert a.add(decoded[1]) == body
    assert a.add(decoded[1]) is None  # a replayed duplicate


@pytest.mark.parametrize("data", [b"", b"\x02" + bytes(40), envelope.fragments(bytes(8), 1, b"x", sent_ms=0,
                                                                               dc="a", meta="m")[0][:36]])
def test_a_bad_envelope_says_so(data):
    with pytest.raises(envelope.BadEnvelope):
        envelope.decode(data)
