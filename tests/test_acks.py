"""End-to-end acknowledgements without sockets: `relay/acks.py`, the core's use of it, and the
publisher's buffer (`stemflow.outstanding`)."""

from __future__ import annotations

from test_relay_core import feed

from stemflow.outstanding import Outstanding
from stemflow.protocol import (
    HEADER,
    Flag,
    FrameType,
    advertise_payload,
    encode,
    encode_json,
    session_id,
)
from stemflow.relay.acks import EGRESS_SILENT_S, RELAY_LOST_GAP_S, RESEND_SETTLE_S, Acks
from stemflow.relay.core import SUBSCRIBER_LINGER_S, Deliver, RelayCore, Reply, SendFrames
from stemflow.relay.history import HistoryPolicy
from stemflow.relay.sessions import REORDER_TIMEOUT_S
from stemflow.routing.plan import LOCAL, RelayTable, Replicate

SID = session_id("t")
RELIABLE = int(Flag.RELIABLE)
DELIVERED = int(FrameType.DELIVERED)
ORIGIN = 7


def frames_of(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(type, flags, session, origin, seq) of every frame in `data` (headers only: no payloads)."""
    out, pos = [], 0
    while pos < len(data):
        _, typ, flags, _, sess, origin, seq, length = HEADER.unpack_from(data, pos)
        out.append((typ, flags, sess, origin, seq))
        pos += HEADER.size + length
    return out


def told(actions, conn) -> list[tuple[int, int]]:
    """(seq, flags) of the DELIVERED frames the actions send to client `conn`."""
    return [(seq, flags) for a in actions if isinstance(a, Reply) and a.conn is conn
            for typ, flags, _, _, seq in frames_of(a.data) if typ == DELIVERED]


def announced(actions) -> dict[str, list[tuple[int, int, int, int]]]:
    """Per peer, (flags, session, origin, seq) of the DELIVERED frames sent to it."""
    out: dict[str, list] = {}
    for a in actions:
        if isinstance(a, SendFrames):
            for f, _ in a.frames:
                out.setdefault(a.peer, []).extend(
                    (flags, s, o, seq) for typ, flags, s, o, seq in frames_of(f) if typ == DELIVERED)
    return out


def data(seq: int, flags: int = RELIABLE) -> bytes:
    return encode(FrameType.DATA, bytes(100), session=SID, seq=seq, flags=flags, origin=ORIGIN)


def delivered(seq: int, flags: int = 0, sid: int = SID) -> bytes:
    return encode(FrameType.DELIVERED, session=sid, seq=seq, flags=flags, origin=ORIGIN)


def peer(core: RelayCore, dc: str):
    conn = core.connection()
    feed(core, conn, encode_json(FrameType.HELLO, {"role": "peer", "dc": dc}))
    return conn


def publisher(core: RelayCore, flags: int = RELIABLE):
    conn = core.connection()
    out = feed(core, conn, encode_json(FrameType.HELLO, {"role": "client"})
               + encode(FrameType.ADVERTISE, advertise_payload("t"), session=SID, flags=flags))
    assert b'"acks":true' in out[0].data  # the HELLO tells the client to keep what is unacked
    return conn


def subscriber(core: RelayCore, topic: str = "t"):
    conn = core.connection()
    feed(core, conn, encode_json(FrameType.HELLO, {"role": "client"})
         + encode(FrameType.SUBSCRIBE, topic.encode(), session=session_id(topic)))
    return conn


def ingress_to(sinks: tuple[str, ...], acks: bool = True) -> RelayCore:
    """Relay a, where t is published, routed to `sinks` (every relay a peer)."""
    core = RelayCore("a", acks=acks)
    core.install(RelayTable("a", 1, {("t", 0): Replicate(sinks)}, {"t": ((0, 1.0),)}),
                 {d: f"{d}:1" for d in ("a", "b", "c")}, 0.0)
    return core


# -- the pure parts --------------------------------------------------------------------------------


def test_the_overlay_acknowledges_the_minimum_over_the_relays_that_deliver():
    acks = Acks()
    assert acks.acknowledged(SID, ORIGIN, 10, None, unrouted=False, now=0.0) is None
    assert acks.acknowledged(SID, ORIGIN, 10, None, unrouted=True, now=0.0) == 10  # nobody: owed nothing
    acks.from_peer("b", SID, 0, 0, int(Flag.EGRESS), 0.0, published_here=True)
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, 0.0) == 0  # b spoke, delivered nothing
    acks.from_peer("b", SID, ORIGIN, 8, 0, 0.1, True)
    acks.from_peer("c", SID, ORIGIN, 5, 0, 0.1, True)
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, 0.2) == 5
    assert acks.acknowledged(SID, ORIGIN, 10, 3, False, 0.2) == 3  # our own subscribers count too
    acks.from_peer("c", SID, ORIGIN, 4, 0, 0.2, True)  # an older announcement cannot go back
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, 0.2) == 5
    acks.from_peer("c", SID, 0, 0, int(Flag.EGRESS | Flag.GONE), 0.3, True)
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, 0.3) == 8  # c's subscribers left
    acks.peers_changed({"a", "c"})
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, 0.3) is None  # b left the overlay


def test_a_silent_egress_stops_counting_and_foreign_sessions_are_not_kept():
    acks = Acks()
    acks.from_peer("b", SID, ORIGIN, 2, 0, 0.0, True)
    acks.from_peer("c", SID, ORIGIN, 9, 0, EGRESS_SILENT_S - 1, True)
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, EGRESS_SILENT_S - 1) == 2
    assert acks.acknowledged(SID, ORIGIN, 10, None, False, EGRESS_SILENT_S + 0.1) == 9
    acks.from_peer("b", 99, ORIGIN, 2, 0, 0.0, published_here=False)
    assert 99 not in acks.egress


def test_resets_are_settled_into_one_resend():
    acks = Acks()
    assert not acks.resend_due(0.0)
    acks.connection_reset()
    assert not acks.resend_due(0.0)
    acks.connection_reset()  # the dead relay's other connections
    assert not acks.resend_due(RESEND_SETTLE_S / 2)
    assert acks.resend_due(RESEND_SETTLE_S)
    assert not acks.resend_due(RESEND_SETTLE_S + 1)


def test_the_publisher_forgets_in_order_what_is_acknowledged():
    o = Outstanding()
    for seq in range(5):
        o.add(SID, seq, bytes(10 + seq))
    assert o.bytes == 60 and o.last_seq(SID) == 4
    assert o.acknowledged(SID, 3) == 10 + 11 + 12
    assert o.frames(SID) == [bytes(13), bytes(14)]
    assert o.acknowledged(SID, 2) == 0  # cumulative: an older acknowledgement frees nothing
    o.acknowledged(SID, 5)
    assert not o and o.last_seq(SID) is None


# -- the core --------------------------------------------------------------------------------------


def test_the_ingress_tells_its_publisher_what_every_egress_delivered():
    core = ingress_to(("b", "c"))
    pub = publisher(core)
    b, c = peer(core, "b"), peer(core, "c")
    feed(core, pub, b"".join(data(i) for i in range(6)))
    assert told(core.tick(1.0), pub) == []  # routed, and no egress has spoken
    assert told(feed(core, c, delivered(0, int(Flag.EGRESS)), 1.0), pub) == []
    assert told(feed(core, b, delivered(6), 1.0), pub) == []  # c delivered nothing yet
    assert told(feed(core, c, delivered(4), 1.0), pub) == [(4, 0)]  # at once, not at the tick
    assert told(core.tick(1.2), pub) == []  # told once
    assert told(feed(core, c, delivered(6), 1.2), pub) == [(6, 0)]


def test_nobody_subscribing_acknowledges_what_the_relay_accepted():
    core = RelayCore("a")
    core.install(RelayTable("a", 1, {}, {"t": ((0, 0.0),)}), {"a": "a:1"}, 0.0)
    pub = publisher(core)
    feed(core, pub, b"".join(data(i) for i in range(3)))
    assert told(core.tick(1.0), pub) == [(3, 0)]


def test_a_lost_relay_makes_the_ingress_ask_its_publisher_to_resend():
    core = ingress_to(("b",))
    pub = publisher(core)
    b = peer(core, "b")
    feed(core, pub, b"".join(data(i) for i in range(6)))
    assert told(feed(core, b, delivered(2), 1.0), pub) == [(2, 0)]
    core.install(RelayTable("a", 2, {("t", 0): Replicate(("b",))}, {"t": ((0, 1.0),)}),
                 {"a": "a:1", "b": "b:1"}, 1.5)  # c left the overlay
    assert told(core.tick(1.5), pub) == [(2, int(Flag.RESEND))]
    core.peer_reset("b")  # a connection of a link was lost: resend once, after it settles
    assert told(core.tick(1.6), pub) == []
    assert told(core.tick(1.6 + RESEND_SETTLE_S), pub) == [(2, int(Flag.RESEND))]


def test_without_acks_the_relay_keeps_nothing_and_tells_nothing():
    core = ingress_to(("b",), acks=False)
    pub = core.connection()
    out = feed(core, pub, encode_json(FrameType.HELLO, {"role": "client"})
               + encode(FrameType.ADVERTISE, advertise_payload("t"), session=SID, flags=RELIABLE))
    assert b'"acks":false' in out[0].data
    feed(core, pub, b"".join(data(i) for i in range(3)))
    assert pub.accepted == {} and told(core.tick(1.0), pub) == []


def egress(history: HistoryPolicy | None = None, acks: bool = True) -> RelayCore:
    core = RelayCore("b", history=history, acks=acks)
    core.install(RelayTable("b", 1, {("t", 0): Replicate((LOCAL,))}, {}),
                 {"a": "a:1", "b": "b:1", "c": "c:1"}, 0.0)
    return core


def test_an_egress_announces_to_every_peer_what_it_delivered():
    core = egress()
    subscriber(core)
    a = peer(core, "a")
    feed(core, a, b"".join(data(i) for i in (0, 1, 2, 4)), 0.5)
    sent = announced(core.tick(0.5))
    member = (int(Flag.EGRESS), SID, 0, 0)
    assert sent == {p: [member, (0, SID, ORIGIN, 3)] for p in ("a", "c")}  # 4 waits for 3
    assert announced(core.tick(0.52)) == {}  # at most every ANNOUNCE_INTERVAL_S
    assert announced(core.tick(0.6)) == {}  # nothing moved
    feed(core, a, data(3), 0.6)
    assert announced(core.tick(0.7))["a"] == [(0, SID, ORIGIN, 5)]


def test_a_reliable_gap_left_by_a_lost_relay_waits_for_the_resend_and_copies_are_dropped():
    core = egress()
    sub = subscriber(core)
    a = peer(core, "a")
    feed(core, a, data(0) + data(2) + data(3), 0.1)
    core.install(RelayTable("b", 2, {("t", 0): Replicate((LOCAL,))}, {}),
                 {"a": "a:1", "b": "b:1"}, 0.2)  # c, which carried frame 1, left
    out = core.tick(0.2 + 2 * REORDER_TIMEOUT_S) + core.tick(0.2 + RELAY_LOST_GAP_S / 2)
    assert core.counters["reorder_skipped"] == 0 and not any(isinstance(a, Deliver) for a in out)
    out = feed(core, a, data(1) + data(2) + data(3), 3.0)  # the publisher's resend
    got = [n for x in out if isinstance(x, Deliver) and sub in x.subscribers for _, n in x.chunks]
    assert sum(got) == 3 and core.counters["late_frames"] == 2  # 1, 2, 3 once; copies dropped


def test_without_acks_that_gap_is_given_up_at_the_live_timeout():
    core = egress(acks=False)
    subscriber(core)
    a = peer(core, "a")
    feed(core, a, data(0) + data(2), 0.1)
    core.install(RelayTable("b", 2, {("t", 0): Replicate((LOCAL,))}, {}), {"a": "a:1"}, 0.2)
    core.tick(0.2 + 2 * REORDER_TIMEOUT_S)
    assert core.counters["reorder_skipped"] == 1


def test_a_lost_subscriber_of_a_topic_with_history_stays_subscribed_for_a_while():
    core = egress(HistoryPolicy.parse(["t=100"]))
    sub = subscriber(core)
    other = subscriber(core, "u")  # no rule keeps history of u: it goes at once
    core.connection_lost(sub, 1.0)
    core.connection_lost(other, 1.0)
    assert core.sessions[SID].subscribers == [sub] and session_id("u") not in core.sessions
    core.tick(1.0 + SUBSCRIBER_LINGER_S / 2)
    assert core.sessions[SID].subscribers == [sub]
    core.tick(1.0 + SUBSCRIBER_LINGER_S + 0.1)
    assert SID not in core.sessions


def test_a_lost_pattern_subscriber_stays_while_a_topic_it_covers_keeps_history():
    core = egress(HistoryPolicy.parse(["t=100"]))
    kept, unkept = subscriber(core, "*"), subscriber(core, "u.*")  # covers t / covers nothing kept
    assert core.sessions[SID].subscribers == [kept]
    core.connection_lost(kept, 1.0)
    core.connection_lost(unkept, 1.0)
    assert core.sessions[SID].subscribers == [kept]
    assert [p.pattern for p in core.patterns.by_sid.values()] == ["*"]
    core.tick(1.0 + SUBSCRIBER_LINGER_S + 0.1)
    assert not core.patterns and SID not in core.sessions
