"""Pattern subscriptions (`chat.*`, `video.>`) with NATS's meaning: in the subjects module, the
controller (a pattern is interest in every published topic it covers), the relay core (the topic
is named to the subscriber before its first message) and real processes end to end."""

from __future__ import annotations

import asyncio

import pytest
from relaynet import Overlay
from test_relay_core import feed

from stemflow.client import connect
from stemflow.controller import Controller, Interest, Problem, RelayJoined, Report
from stemflow.network import LinkState, NetworkState
from stemflow.protocol import (
    Flag,
    FrameDecoder,
    FrameType,
    advertise_payload,
    encode,
    encode_json,
    session_id,
)
from stemflow.relay.core import Close, Deliver, RelayCore, Reply
from stemflow.routing.plan import LOCAL, RelayTable, Replicate
from stemflow.scenario import TcpSettings
from stemflow.subjects import is_pattern, matches

RELIABLE = int(Flag.RELIABLE)


# -- subjects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic, expected", [("chat.*", True), ("video.>", True), (">", True),
                                             ("chat.room1", False), ("a*b.c", False),
                                             ("x>y", False), ("", False)])
def test_a_pattern_is_a_topic_with_a_wildcard_token(topic, expected):
    assert is_pattern(topic) is expected


@pytest.mark.parametrize("wide, narrow, expected", [
    ("chat.>", "chat.*", True), ("chat.*", "chat.>", False), (">", "chat.*", True),
    ("chat.*", "chat.*", True), ("*.room1", "chat.*", False), ("chat.*", "*.room1", False)])
def test_a_pattern_covers_another_only_if_it_covers_every_topic_of_it(wide, narrow, expected):
    """What a token's subscribe permission (`chat.>`) allows a pattern subscription to ask."""
    assert matches(wide, narrow) is expected


# -- the controller --------------------------------------------------------------------------------


def controller() -> Controller:
    links = {(x, y): LinkState(10.0, 100.0) for x in "abc" for y in "abc" if x != y}
    net = NetworkState(("a", "b", "c"), links, {}, {}, TcpSettings(), parallel=4)
    c = Controller(net, strategy="direct")
    for r in "abc":
        c.handle(RelayJoined(r, f"{r}:1"), 0.0)
    return c


def sinks(c: Controller) -> dict[str, tuple[str, ...]]:
    return {d.wire_topic: d.sinks for d in c.sessions.values()}


def test_a_pattern_subscriber_is_a_sink_of_every_published_topic_it_covers():
    c = controller()
    for topic in ("chat.room1", "chat.room2", "chat.room1.typing", "news"):
        c.handle(Interest("a", topic, 1, 0), 1.0)
    c.handle(Interest("b", "chat.*", 0, 2), 1.0)
    assert sinks(c) == {"chat.room1": ("b",), "chat.room2": ("b",)}
    c.handle(Interest("c", "chat.>", 0, 1), 1.0)
    c.handle(Interest("b", "chat.room1", 0, 1), 1.0)  # and the topic itself: still one sink b
    assert sinks(c) == {"chat.room1": ("b", "c"), "chat.room2": ("b", "c"),
                        "chat.room1.typing": ("c",)}
    c.handle(Interest("c", "chat.>", 0, 0), 2.0)  # withdrawn
    assert sinks(c) == {"chat.room1": ("b",), "chat.room2": ("b",)}
    c.handle(Interest("a", "chat.room3", 1, 0), 2.0)  # a topic published after the pattern
    assert sinks(c)["chat.room3"] == ("b",)


def test_a_pattern_reported_with_publishers_or_malformed_is_a_problem():
    c = controller()
    out = c.handle(Report("a", {"interest": [
        {"topic": "chat.*", "publishers": 1, "subscribers": 0},
        {"topic": "chat.>.x", "publishers": 0, "subscribers": 1}]}), 1.0)
    problems = [p.message for p in out if isinstance(p, Problem)]
    assert len(problems) == 2 and "subscribers only" in problems[0] and "'>'" in problems[1]
    assert not c.patterns


# -- the relay core ------------------------------------------------------------------------------


def subscriber(core: RelayCore, topic: str):
    conn = core.connection()
    feed(core, conn, encode_json(FrameType.HELLO, {"role": "client"})
         + encode(FrameType.SUBSCRIBE, topic.encode(), session=session_id(topic)))
    return conn


def frame(topic: str, seq: int) -> bytes:
    return encode(FrameType.DATA, b"m%d" % seq, session=session_id(topic), seq=seq,
                  flags=RELIABLE, origin=7)


def told(actions, conn) -> list[tuple[FrameType, bytes]]:
    """What `actions` write to `conn`, as (frame type, payload), in order."""
    out = []
    for a in actions:
        if isinstance(a, Reply) and a.conn is conn:
            out += [(f.type, bytes(f.payload)) for f in FrameDecoder().receive_data(a.data)]
        elif isinstance(a, Deliver) and conn in a.subscribers:
            data = b"".join(bytes(c) for c, _ in a.chunks)
            out += [(f.type, bytes(f.payload)) for f in FrameDecoder().receive_data(data)]
    return out


def test_a_relay_names_the_topic_to_a_pattern_subscriber_before_delivering_it():
    core = RelayCore("b")
    sub = subscriber(core, "chat.*")
    assert core.report()["interest"] == [{"topic": "chat.*", "publishers": 0, "subscribers": 1,
                                          "priority": "bulk"}]
    table = RelayTable("b", 1, {("chat.room1", 0): Replicate((LOCAL,)),
                                ("news", 0): Replicate((LOCAL,))}, {})
    out = core.install(table, {"a": "x:1"}, 0.0)
    assert told(out, sub) == [(FrameType.TOPIC, b"chat.room1")]
    peer = core.connection()
    feed(core, peer, encode_json(FrameType.HELLO, {"role": "peer", "dc": "a"}))
    out = feed(core, peer, frame("chat.room1", 0) + frame("news", 0) + frame("chat.room1", 1))
    assert told(out, sub) == [(FrameType.DATA, b"m0"), (FrameType.DATA, b"m1")]
    # the pattern is the relay's interest; the topic it binds is not reported as a subscription
    assert [i["topic"] for i in core.report()["interest"]] == ["chat.*"]
    feed(core, sub, encode(FrameType.UNSUBSCRIBE, b"chat.*", session=session_id("chat.*")))
    assert told(feed(core, peer, frame("chat.room1", 2)), sub) == []
    assert core.report()["interest"] == [] and not core.sessions


def test_a_local_publisher_reaches_a_pattern_subscriber_of_the_same_relay_and_named_once():
    core = RelayCore("a")
    sub = subscriber(core, "video.>")
    pub = core.connection()
    out = feed(core, pub, encode_json(FrameType.HELLO, {"role": "client"})
               + encode(FrameType.ADVERTISE, advertise_payload("video.4k.key"),
                        session=session_id("video.4k.key"), flags=RELIABLE))
    assert told(out, sub) == [(FrameType.TOPIC, b"video.4k.key")]
    direct = subscriber(core, "video.4k.key")  # knows its topic: told nothing
    core.install(RelayTable("a", 1, {}, {"video.4k.key": ()}), {}, 0.0)  # nobody elsewhere
    out = feed(core, pub, frame("video.4k.key", 0))
    assert told(out, sub) == [(FrameType.DATA, b"m0")] == told(out, direct)
    feed(core, direct, encode(FrameType.UNSUBSCRIBE, b"video.4k.key",
                              session=session_id("video.4k.key")))
    out = feed(core, pub, frame("video.4k.key", 1))  # still the pattern's; no second TOPIC
    assert told(out, sub) == [(FrameType.DATA, b"m1")] and told(out, direct) == []


def test_publishing_on_a_pattern_closes_the_connection_with_the_reason():
    core = RelayCore("a")
    conn = core.connection()
    out = feed(core, conn, encode_json(FrameType.HELLO, {"role": "client"})
               + encode(FrameType.ADVERTISE, advertise_payload("chat.*"),
                        session=session_id("chat.*"), flags=RELIABLE))
    assert isinstance(out[-1], Close) and "wildcards" in out[-1].reason


# -- real processes ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_pattern_subscriptions_across_two_relays_with_nats_semantics(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")

    async def run():
        pub, sub = await connect(o.addr["a"]), await connect(o.addr["b"])
        try:
            one = await sub.subscribe("chat.*")
            rest = await sub.subscribe("chat.>")
            room = await sub.subscribe("chat.room1")
            with pytest.raises(ValueError, match="wildcards"):
                await pub.publish("chat.*", b"x")
            await asyncio.to_thread(o.wait_status, lambda s: {"chat.*", "chat.>"} <= set(
                s.get("patterns", {})))
            for topic in ("chat.room1", "chat.room2", "chat.room1.typing", "news"):
                assert await pub.publish(topic, topic.encode()) is (topic != "news")
            got_one = [(await one.get(10)).topic for _ in range(2)]
            got_rest = [(await rest.get(10)).topic for _ in range(3)]
            got_room = (await room.get(10)).topic
            assert got_one == ["chat.room1", "chat.room2"]
            assert got_rest == ["chat.room1", "chat.room2", "chat.room1.typing"]
            assert got_room == "chat.room1"
            with pytest.raises(TimeoutError):  # each message once per subscription, no more
                await one.get(0.5)
            one.unsubscribe()
            rest.unsubscribe()
            await asyncio.to_thread(o.wait_status, lambda s: not s.get("patterns"))
            assert await pub.publish("chat.room2", b"x") is False  # nobody covers it any more
        finally:
            await pub.close()
            await sub.close()

    try:
        asyncio.run(run())
    finally:
        o.close()
