"""Credit flow control between relays, without sockets (`stemflow.relay.credit`, `core`).

A sender never puts more of a session's reliable bytes on a hop than the receiver granted; the
receiver grants more as frames leave it, holds it back for a subscriber that does not read (that
session alone), and a shared peer connection is never paused for one session.
"""

from __future__ import annotations

from test_relay_core import feed

from stemflow.protocol import (
    HEADER,
    Flag,
    FrameType,
    ReceiveBuffer,
    advertise_payload,
    encode,
    encode_json,
    session_id,
)
from stemflow.relay.core import Close, Deliver, PauseReading, RelayCore, Reply, SendFrames, SendRuns
from stemflow.relay.credit import INITIAL_WINDOW_BYTES, MAX_WINDOW_BYTES, window_bytes
from stemflow.relay.sessions import (
    REORDER_CREDIT_STALL_S,
    REORDER_HARD_FACTOR,
    REORDER_MAX_FRAMES,
    REORDER_START_TIMEOUT_S,
)
from stemflow.relay.slow import BLOCK, SlowSubscriberPolicy
from stemflow.routing.plan import LOCAL, RelayTable, Replicate

RELIABLE = int(Flag.RELIABLE)
FRAME = 64 << 10


def frame(topic: str, seq: int, flags: int = RELIABLE, route: int = 0) -> bytes:
    return encode(FrameType.DATA, bytes(FRAME - HEADER.size), session=session_id(topic), seq=seq,
                  flags=flags, origin=1, route=route)


def sent_bytes(actions, peer: str) -> int:
    """Bytes the actions put on the hop to `peer`."""
    n = 0
    for a in actions:
        if isinstance(a, SendRuns):
            n += sum(x1 - x0 for x0, x1, _, _ in a.runs.get(peer, ()))
        elif isinstance(a, SendFrames) and a.peer == peer:
            n += sum(len(f) for f, _ in a.frames)
    return n


def is_ack(a) -> bool:
    """An egress's DELIVERED announcement to a peer (`acks.py`)."""
    return isinstance(a, SendFrames) and all(f[1] == FrameType.DELIVERED for f, _ in a.frames)


def credits_in(actions) -> list[tuple[int, int, int]]:
    """(session, route, increment) of every CREDIT frame the actions send."""
    out = []
    for a in actions:
        if isinstance(a, Reply):
            pos = 0
            while pos < len(a.data):
                _, typ, _, route, sess, _, seq, length = HEADER.unpack_from(a.data, pos)
                if typ == FrameType.CREDIT:
                    out.append((sess, route, seq))
                pos += HEADER.size + length
    return out


def transit(dc: str = "m", topics=("x", "y"), next_hop: str = "b") -> RelayCore:
    """A relay forwarding `topics` (route 0) from peer `a` to `next_hop`."""
    core = RelayCore(dc)
    core.install(RelayTable(dc, 1, {(t, 0): Replicate((next_hop,)) for t in topics}, {}),
                 {"a": "a:1", next_hop: "b:1"}, 0.0)
    return core


def peer_conn(core: RelayCore, dc: str = "a"):
    conn = core.connection()
    assert feed(core, conn, encode_json(FrameType.HELLO, {"role": "peer", "dc": dc})) == []
    return conn


def test_a_sender_never_exceeds_its_credit_and_frames_wait_per_session():
    core = transit()
    up = peer_conn(core)
    actions = []
    n = 2 * INITIAL_WINDOW_BYTES // FRAME
    for i in range(n):
        actions += feed(core, up, frame("x", i))
    assert sent_bytes(actions, "b") == INITIAL_WINDOW_BYTES  # the rest waits for credit
    assert not any(isinstance(a, PauseReading) for a in actions)  # the peer is still read
    # another session on the same hop and connection is not held behind "x"
    assert sent_bytes(feed(core, up, frame("y", 0)), "b") == FRAME
    # the next hop grants a quarter window: exactly that much more of "x" leaves, in order
    released = core.credit("b", session_id("x"), 0, INITIAL_WINDOW_BYTES // 4)
    assert sent_bytes(released, "b") == INITIAL_WINDOW_BYTES // 4
    (send,) = [a for a in released if isinstance(a, SendFrames)]
    seqs = [HEADER.unpack_from(f)[6] for f, _ in send.frames]
    assert seqs == list(range(n // 2, n // 2 + len(seqs)))


def test_a_relay_grants_its_upstream_more_as_frames_leave_it():
    core = transit()
    up = peer_conn(core)
    actions = []
    for i in range(INITIAL_WINDOW_BYTES // FRAME):
        actions += feed(core, up, frame("x", i))
    # everything left on the next hop's initial credit, so the upstream gets credit back
    sid = session_id("x")
    got = credits_in(actions)
    assert got and {(s, r) for s, r, _ in got} == {(sid, 0)}
    assert sum(inc for _, _, inc in got) <= INITIAL_WINDOW_BYTES
    assert sum(inc for _, _, inc in got) >= INITIAL_WINDOW_BYTES * 3 // 4
    # frames that wait for the next hop's credit are not granted again until they leave
    more = []
    for i in range(INITIAL_WINDOW_BYTES // FRAME):
        more += feed(core, up, frame("x", 1000 + i))
    assert credits_in(more) == []
    assert credits_in(core.credit("b", sid, 0, INITIAL_WINDOW_BYTES)) != []


def egress(policy: SlowSubscriberPolicy | None = None) -> tuple[RelayCore, object, object]:
    """Relay b: topics x and y from peer a, each with one local subscriber."""
    core = RelayCore("b", slow=policy)
    core.install(RelayTable("b", 1, {(t, 0): Replicate((LOCAL,)) for t in ("x", "y")}, {}),
                 {"a": "a:1"}, 0.0)
    subs = []
    for t in ("x", "y"):
        c = core.connection()
        feed(core, c, encode_json(FrameType.HELLO, {"role": "client"})
             + encode(FrameType.SUBSCRIBE, t.encode(), session=session_id(t)))
        subs.append(c)
    return core, subs[0], subs[1]


def test_a_full_subscriber_holds_back_its_session_alone_and_is_cut_after_the_deadline():
    core, sub_x, _ = egress(SlowSubscriberPolicy(deadline_s=1.0))
    up = peer_conn(core)
    core.subscriber_backlogged(sub_x, True, 0.0)
    actions = []
    for i in range(INITIAL_WINDOW_BYTES // FRAME):
        actions += feed(core, up, frame("x", i) + frame("y", i))
    assert any(isinstance(a, Deliver) for a in actions)  # what was granted is still delivered
    sessions = {s for s, _, _ in credits_in(actions)}
    assert sessions == {session_id("y")}  # x waits for its subscriber; y goes on
    assert not any(isinstance(a, PauseReading) for a in actions)
    assert [a for a in core.tick(0.5) if not is_ack(a)] == []
    cut = core.tick(1.5)
    assert Close in {type(a) for a in cut} and core.counters["slow_subscriber_disconnects"] == 1
    assert session_id("x") in {s for s, _, _ in credits_in(cut)}  # x moves on without it


def test_under_the_block_policy_the_session_waits_for_its_subscriber_however_long():
    core, sub_x, _ = egress(SlowSubscriberPolicy(((("x", BLOCK)),), deadline_s=1.0))
    up = peer_conn(core)
    core.subscriber_backlogged(sub_x, True, 0.0)
    for i in range(INITIAL_WINDOW_BYTES // FRAME):
        feed(core, up, frame("x", i))
    assert not any(isinstance(a, Close) for a in core.tick(100.0))
    assert session_id("x") in {s for s, _, _ in credits_in(
        core.subscriber_backlogged(sub_x, False, 100.0))}


def test_a_publishing_client_is_paused_while_its_frames_wait_for_credit():
    core = RelayCore("a")
    core.install(RelayTable("a", 1, {("x", 0): Replicate(("b",))}, {"x": ((0, 1.0),)}),
                 {"b": "b:1"}, 0.0)
    pub = core.connection()
    feed(core, pub, encode_json(FrameType.HELLO, {"role": "client"})
         + encode(FrameType.ADVERTISE, advertise_payload("x"), session=session_id("x"),
                  flags=RELIABLE))
    actions = []
    rb = ReceiveBuffer()
    for i in range(4 * INITIAL_WINDOW_BYTES // FRAME):
        actions += feed(core, pub, frame("x", i), rb=rb)
    assert sent_bytes(actions, "b") == INITIAL_WINDOW_BYTES
    assert PauseReading(pub) in actions
    resumed = core.credit("b", session_id("x"), 0, 3 * INITIAL_WINDOW_BYTES)
    assert any(type(a).__name__ == "ResumeReading" and a.conn is pub for a in resumed)


def test_windows_span_two_round_trips_of_the_planned_rate_within_bounds():
    assert window_bytes(None, None) == INITIAL_WINDOW_BYTES  # loopback: the floor
    assert window_bytes(400.0, 95.0) == int(2 * 400e6 / 8 * 0.100)
    assert window_bytes(10_000.0, 250.0) == MAX_WINDOW_BYTES


def test_a_live_queue_is_bounded_in_time_and_drops_its_oldest_frames():
    from stemflow.relay.outbox import BULK_RELIABLE, DS_LIVE, LIVE_MAX_WAIT_S, Outbox

    now = [0.0]
    ob = Outbox(clock=lambda: now[0])
    ob.push(b"old", 1, DS_LIVE)
    ob.push(b"bulk", 1, BULK_RELIABLE)
    now[0] = LIVE_MAX_WAIT_S / 2
    ob.push(b"new", 1, DS_LIVE)
    now[0] = LIVE_MAX_WAIT_S * 1.2  # "old" waited too long, "new" did not
    assert ob.pull() == [b"new", b"bulk"] and ob.dropped_frames == 1
    now[0] = 10.0
    ob.push(b"late", 1, DS_LIVE)
    now[0] = 10.0 + 2 * LIVE_MAX_WAIT_S
    assert ob.pull() == [] and not ob and ob.dropped_frames == 2


def test_slow_subscriber_rules_are_subject_patterns_and_a_bad_one_is_refused():
    import pytest

    policy = SlowSubscriberPolicy.parse(["logs.>=block", "disconnect"])
    assert (policy.of("logs.app.1"), policy.of("logs"), policy.of("chat.x")) == (
        BLOCK, "disconnect", "disconnect")
    with pytest.raises(ValueError):
        SlowSubscriberPolicy.parse(["a..b=block"])


def small(topic: str, seq: int, size: int = 256) -> bytes:
    return encode(FrameType.DATA, bytes(size - HEADER.size), session=session_id(topic), seq=seq,
                  flags=RELIABLE, origin=1)


def feed_all(core, conn, frames: list[bytes], now: float = 0.0, batch: int = 64) -> list:
    """`frames` in reads of `batch` frames."""
    out = []
    for i in range(0, len(frames), batch):
        out += feed(core, conn, b"".join(frames[i:i + batch]), now)
    return out


def delivered(actions) -> int:
    return sum(n for a in actions if isinstance(a, Deliver) for _, n in a.chunks)


def test_an_egress_holds_a_whole_window_ahead_of_a_gap_and_loses_nothing():
    """Frames of one route overtake each other across the P connections of a hop. What the
    egress holds for a gap is paid for only once delivered in order, so the upstream's window
    bounds it and no frame of a reliable stream is skipped for lack of room (with 1 KiB frames
    on loopback, 8 192 frames ahead of a gap were once skipped: 24 341 lost of 149 312)."""
    core, _, _ = egress()
    up = peer_conn(core)
    n = REORDER_HARD_FACTOR * REORDER_MAX_FRAMES + 100  # past the frame bounds of the reorder
    assert n * 256 < INITIAL_WINDOW_BYTES  # ... and within the upstream's credit
    actions = feed_all(core, up, [small("x", i) for i in range(1, n + 1)])
    assert delivered(actions) == 0 and credits_in(actions) == []  # nothing paid while held
    actions = feed(core, up, small("x", 0))
    assert delivered(actions) == n + 1
    assert core.counters["reorder_skipped"] == 0 and core.counters["late_frames"] == 0
    assert sum(inc for s, _, inc in credits_in(actions) if s == session_id("x")) >= (n + 1) * 256 // 2


def test_a_gap_that_does_not_move_has_its_frames_paid_for_so_an_overtaken_frame_can_come():
    core, _, _ = egress()
    up = peer_conn(core)
    n = INITIAL_WINDOW_BYTES // 256 - 2  # the rest of the window, held behind frame 1
    assert delivered(feed(core, up, small("x", 0))) == 1  # the stream has started
    feed_all(core, up, [small("x", i) for i in range(2, n + 2)])
    assert credits_in(core.tick(REORDER_CREDIT_STALL_S / 2)) == []
    released = core.tick(2 * REORDER_CREDIT_STALL_S)
    assert sum(inc for _, _, inc in credits_in(released)) >= n * 256 * 3 // 4
    assert core.counters["reorder_credit_released"] == 1
    assert delivered(feed(core, up, small("x", 1), now=1.0)) == n + 1  # still nothing lost


def test_a_relay_that_joins_a_reliable_stream_mid_way_starts_where_it_joined():
    """Frames 0-18 went to other relays before this one subscribed: it delivers from 19 once
    the start gap has waited REORDER_START_TIMEOUT_S, not the reliable gap timeout (30 s)."""
    core, _, _ = egress()
    up = peer_conn(core)
    assert delivered(feed_all(core, up, [small("x", i) for i in range(19, 31)])) == 0
    assert delivered(core.tick(REORDER_START_TIMEOUT_S / 2)) == 0
    assert delivered(core.tick(2 * REORDER_START_TIMEOUT_S)) == 12
    assert core.counters["joined_mid_stream"] == 1 and core.counters["reorder_skipped"] == 0
    # from then on a gap is a reliable gap again: it waits
    feed(core, up, small("x", 33), now=5.0)
    assert delivered(core.tick(10.0)) == 0


def test_a_stream_whose_first_frames_come_out_of_order_still_starts_at_zero():
    core, _, _ = egress()
    up = peer_conn(core)
    assert delivered(feed(core, up, small("x", 1) + small("x", 2))) == 0
    assert delivered(feed(core, up, small("x", 0), now=0.01)) == 3


def test_frames_held_for_a_gap_are_paid_for_when_the_session_ends_here():
    core, sub_x, _ = egress()
    up = peer_conn(core)
    n = INITIAL_WINDOW_BYTES // 256 - 2
    feed(core, up, small("x", 0))
    feed_all(core, up, [small("x", i) for i in range(2, n + 2)])  # held behind frame 1
    out = feed(core, sub_x, encode(FrameType.UNSUBSCRIBE, b"x", session=session_id("x")))
    assert sum(inc for s, _, inc in credits_in(out) if s == session_id("x")) >= n * 256 * 3 // 4


def test_a_full_subscriber_that_keeps_reading_is_waited_for_and_one_that_stops_is_cut():
    core, sub_x, _ = egress(SlowSubscriberPolicy(deadline_s=1.0))
    core.subscriber_backlogged(sub_x, True, 0.0)
    for t in (0.8, 1.6, 2.4):  # its socket drains now and then: it reads, slower than the topic
        core.subscriber_progress(sub_x, t)
        assert Close not in {type(a) for a in core.tick(t + 0.5)}
    assert core.counters["slow_subscriber_disconnects"] == 0
    cut = core.tick(3.5)  # then it stops reading
    assert Close in {type(a) for a in cut} and core.counters["slow_subscriber_disconnects"] == 1
