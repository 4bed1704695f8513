"""The framing, sans-IO: round trips, any split of a stream, malformed input, table payloads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemflow.protocol import (
    HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    VERSION,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    ReceiveBuffer,
    encode,
    encode_frame,
    frame_ids,
    frame_route,
    header,
    session_id,
    table_from_json,
    table_to_json,
)
from stemflow.routing.plan import LOCAL, RelayTable, Replicate, Split

frames_st = st.builds(
    Frame,
    type=st.sampled_from(list(FrameType)),
    session=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 255),
    route=st.integers(0, 255),
    origin=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
)


def plain(f: Frame) -> tuple:
    return (f.type, f.session, f.seq, f.flags, f.route, f.origin, bytes(f.payload))


@settings(max_examples=200, deadline=None)
@given(st.lists(frames_st, max_size=12), st.lists(st.integers(0, 4000), max_size=10))
def test_any_split_of_a_stream_parses_to_the_same_frames(frames, cuts):
    stream = b"".join(encode_frame(f) for f in frames)
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    dec = FrameDecoder()
    got = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        got += [plain(f) for f in dec.receive_data(stream[a:b])]
    assert dec.receive_data(b"") == []
    assert got == [plain(f) for f in frames]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_raise_only_protocol_error(chunks):
    dec = FrameDecoder()
    try:
        for c in chunks:
            dec.receive_data(c)
        dec.receive_data(b"")
    except ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(frames_st, st.integers(1, 23))
def test_random_header_fields_after_valid_frames_raise_only_protocol_error(frame, junk_len):
    dec = FrameDecoder()
    dec.receive_data(encode_frame(frame))
    try:
        dec.receive_data(bytes(range(junk_len)))
        dec.receive_data(b"")
    except ProtocolError:
        pass


def test_bad_version_unknown_type_oversize_truncated():
    bad_version = bytearray(encode(FrameType.DATA, b"x"))
    bad_version[0] = VERSION + 1
    with pytest.raises(ProtocolError, match="version"):
        FrameDecoder().receive_data(bytes(bad_version))
    unknown = bytearray(encode(FrameType.DATA, b"x"))
    unknown[1] = 99
    with pytest.raises(ProtocolError, match="unknown frame type"):
        FrameDecoder().receive_data(bytes(unknown))
    oversize = bytearray(encode(FrameType.DATA))
    oversize[20:24] = (MAX_PAYLOAD_BYTES + 1).to_bytes(4, "big")
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder().receive_data(bytes(oversize))
    dec = FrameDecoder()
    assert dec.receive_data(encode(FrameType.DATA, b"hello")[:-2]) == []
    with pytest.raises(ProtocolError, match="mid-frame"):
        dec.receive_data(b"")
    dec = FrameDecoder()
    dec.receive_data(encode(FrameType.PING)[:HEADER_SIZE - 1])
    with pytest.raises(ProtocolError, match="mid-frame"):
        dec.receive_data(b"")
    with pytest.raises(ValueError):
        header(FrameType.DATA, length=MAX_PAYLOAD_BYTES + 1)


def _fill(rb: ReceiveBuffer, data: bytes) -> None:
    space = rb.get_buffer()
    space[:len(data)] = data
    rb.updated(len(data))


def test_receive_buffer_scans_frames_in_place_and_keeps_the_tail():
    a = encode(FrameType.DATA, b"a" * 1000, session=7, seq=3, flags=Flag.RELIABLE, route=2, origin=9)
    b = encode(FrameType.DATA, b"b" * 500, session=8, seq=4)
    rb = ReceiveBuffer()
    _fill(rb, a + b[:100])
    ((typ, flags, route, sess, origin, seq, pos, stop),) = list(rb.frames())
    assert (typ, flags, route, sess, origin, seq) == (FrameType.DATA, Flag.RELIABLE, 2, 7, 9, 3)
    assert bytes(rb.view[pos:stop]) == a and rb.payload(pos, stop) == b"a" * 1000
    rb.set_route(pos, 5)
    assert frame_route(rb.view[pos:stop]) == 5 and frame_ids(rb.view[pos:stop]) == (7, 9, 3)
    rb.consumed()
    assert len(rb) == 100
    _fill(rb, b[100:])
    assert [f[3] for f in rb.frames()] == [8]
    rb.consumed()
    assert len(rb) == 0 and rb.start == 0


def test_receive_buffer_grows_to_fit_the_largest_frame():
    rb = ReceiveBuffer()
    big = encode(FrameType.DATA, b"z" * MAX_PAYLOAD_BYTES)
    while len(rb) < len(big):
        space = rb.get_buffer()
        n = min(len(space), len(big) - len(rb))
        space[:n] = big[len(rb):len(rb) + n]
        rb.updated(n)
    assert [f[7] - f[6] for f in rb.frames()] == [len(big)]


def test_receive_buffer_rejects_a_bad_header():
    rb = ReceiveBuffer()
    bad = bytearray(encode(FrameType.DATA, b"x"))
    bad[0] = 99
    _fill(rb, bytes(bad))
    with pytest.raises(ProtocolError):
        list(rb.frames())


def test_decoder_buffers_at_most_one_frame():
    dec = FrameDecoder()
    big = encode(FrameType.DATA, b"z" * MAX_PAYLOAD_BYTES)
    assert dec.receive_data(big[:-1]) == []
    assert dec.buffered == len(big) - 1
    (f,) = dec.receive_data(big[-1:])
    assert len(f.payload) == MAX_PAYLOAD_BYTES and dec.buffered == 0


def test_session_id_is_stable_and_32_bit():
    assert session_id("video") == session_id("video") != session_id("audio")
    assert 0 <= session_id("x" * 200) < 2**32


def test_table_round_trip_and_malformed_push():
    t = RelayTable("a", 5, {("s", 0): Split((("b", 0.7), ("c", 0.3))), ("m", 1): Replicate(("b", LOCAL))},
                   {"s": ((0, 1.0),), "m": ((1, 0.5), (2, 0.5))})
    back, peers = table_from_json(table_to_json(t, {"b": "127.0.0.1:1"}))
    assert back == t and peers == {"b": "127.0.0.1:1"}
    with pytest.raises(ProtocolError):
        table_from_json({"relay": "a", "version": 1, "entries": [{"session": "s", "route": 0}],
                         "ingress": {}})
    with pytest.raises(ProtocolError):
        Frame(FrameType.REPORT, payload=b"{not json").json()
