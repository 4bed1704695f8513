"""The relay's decisions without sockets: frames in, actions out (`stemflow.relay.core`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stemflow.controller import Controller, RelayJoined, Report, interests_of
from stemflow.network import NetworkState
from stemflow.protocol import (
    Flag,
    FrameDecoder,
    FrameType,
    ReceiveBuffer,
    advertise_payload,
    encode,
    encode_json,
    frame_flags,
    frame_route,
    session_id,
)
from stemflow.relay import core as core_mod
from stemflow.relay.core import (
    Close,
    Deliver,
    InterestChanged,
    PauseReading,
    PeersChanged,
    RelayCore,
    Reply,
    SendFrames,
    SendRuns,
)
from stemflow.relay.sessions import PENDING_MAX_BYTES, ROUTE_WAIT_S
from stemflow.routing.demand import demands_from_scenario
from stemflow.routing.plan import LOCAL, RelayTable, Replicate
from stemflow.routing.registry import RoutingOptions
from stemflow.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SID = session_id("t")
RELIABLE = int(Flag.RELIABLE)


def feed(core: RelayCore, conn, data: bytes, now: float = 0.0, rb: ReceiveBuffer | None = None):
    """Deliver `data` on `conn` as one read; return the actions (and keep `rb` for views)."""
    rb = rb or ReceiveBuffer()
    space = rb.get_buffer()
    space[:len(data)] = data
    rb.updated(len(data))
    actions = core.receive(conn, rb, now)
    feed.rb = rb
    return actions


def client(core: RelayCore, topic: str = "t", flags: int = RELIABLE, **options):
    conn = core.connection()
    out = feed(core, conn, encode_json(FrameType.HELLO, {"role": "client"})
               + encode(FrameType.ADVERTISE, advertise_payload(topic, **options),
                        session=session_id(topic), flags=flags))
    assert isinstance(out[0], Reply) and InterestChanged() in out
    return conn


def data(seq: int, size: int = 100, flags: int = RELIABLE, route: int = 0) -> bytes:
    return encode(FrameType.DATA, bytes(size), session=SID, seq=seq, flags=flags, origin=7,
                  route=route)


def table(version: int = 1, route: int = 0, ingress: tuple = ((0, 1.0),)) -> RelayTable:
    return RelayTable("a", version, {("t", route): Replicate(("b",))}, {"t": ingress})


def test_a_publisher_states_its_rate_and_budget_and_the_report_carries_them():
    core = RelayCore("a")
    client(core, flags=RELIABLE | Flag.DELAY_SENSITIVE, max_rate_mbps=5.0, latency_budget_ms=80)
    (item,) = core.report()["interest"]
    assert item == {"topic": "t", "publishers": 1, "subscribers": 0, "priority": "delay-sensitive",
                    "max_rate_mbps": 5.0, "latency_budget_ms": 80.0}


def test_frames_before_the_table_wait_and_leave_on_its_route_when_it_comes():
    core = RelayCore("a")
    pub = client(core)
    assert feed(core, pub, data(0) + data(1)) == []  # held: no table yet
    actions = core.install(table(route=3, ingress=((3, 1.0),)), {"a": "x:1", "b": "y:1"}, 0.1)
    assert PeersChanged({"b": "y:1"}) in actions
    (send,) = [a for a in actions if isinstance(a, SendFrames)]
    assert send.peer == "b" and [frame_route(f) for f, _ in send.frames] == [3, 3]


def test_with_a_table_a_run_of_frames_leaves_as_one_range_of_the_receive_buffer():
    core = RelayCore("a")
    pub = client(core)
    core.install(table(), {"b": "y:1"}, 0.0)
    (run,) = feed(core, pub, data(0) + data(1) + data(2))
    assert isinstance(run, SendRuns) and list(run.runs) == ["b"]
    ((start, stop, _, n),) = run.runs["b"]
    assert (start, stop - start, n) == (0, 3 * len(data(0)), 3)


def test_a_topic_nobody_else_subscribes_to_is_not_held():
    core = RelayCore("a")
    pub = client(core)
    core.install(RelayTable("a", 1, {}, {"t": ()}), {}, 0.0)
    assert feed(core, pub, data(0)) == []
    assert core.counters["no_subscriber"] == 1 and not core.pending


def test_live_frames_wait_for_a_route_at_most_route_wait_but_reliable_ones_wait_paused():
    core = RelayCore("a")
    pub = client(core)
    live = client(core, "t", flags=0)  # same session, another publisher, live class
    feed(core, live, data(0, flags=0))
    frame = data(1, size=64 << 10)
    actions = []
    for _ in range(PENDING_MAX_BYTES // len(frame) + 2):
        actions += feed(core, pub, frame, now=0.0)
    assert PauseReading(pub) in actions  # backpressure: the publisher stops being read
    core.tick(ROUTE_WAIT_S + 10.0)
    assert core.counters["pending_expired"] == 1  # the live frame; no reliable one
    assert sum(1 for f in core.pending[SID].frames) == PENDING_MAX_BYTES // len(frame) + 2
    resumed = core.install(table(), {"b": "y:1"}, 20.0)
    assert any(isinstance(a, SendFrames) for a in resumed)
    assert any(type(a).__name__ == "ResumeReading" and a.conn is pub for a in resumed)


def test_a_peer_stream_is_delivered_in_order_across_a_gap():
    core = RelayCore("b")
    sub = core.connection()
    feed(core, sub, encode_json(FrameType.HELLO, {"role": "client"})
         + encode(FrameType.SUBSCRIBE, b"t", session=SID))
    core.install(RelayTable("b", 1, {("t", 0): Replicate((LOCAL,))}, {}), {"a": "x:1"}, 0.0)
    peer = core.connection()
    feed(core, peer, encode_json(FrameType.HELLO, {"role": "peer", "dc": "a"}))
    first = feed(core, peer, data(0) + data(2))
    (d,) = [a for a in first if isinstance(a, Deliver)]
    assert d.subscribers == [sub] and [n for _, n in d.chunks] == [1]
    later = feed(core, peer, data(1))
    (d,) = [a for a in later if isinstance(a, Deliver)]
    frames = FrameDecoder().receive_data(b"".join(bytes(c) for c, _ in d.chunks))
    assert [f.seq for f in frames] == [1, 2] and sum(n for _, n in d.chunks) == 2


def test_malformed_input_closes_that_connection_after_the_good_frames():
    core = RelayCore("a")
    pub = client(core)
    core.install(table(), {"b": "y:1"}, 0.0)
    bad = bytearray(data(1))
    bad[0] = 99
    actions = feed(core, pub, data(0) + bytes(bad))
    assert isinstance(actions[0], SendRuns) and isinstance(actions[-1], Close)
    assert core.counters["protocol_errors"] == 1
    assert isinstance(feed(core, core.connection(), data(0))[-1], Close)  # no HELLO first


def test_a_dropped_route_forwards_until_it_retires():
    core = RelayCore("a")
    client(core)
    core.install(table(1, route=1, ingress=((1, 1.0),)), {"b": "y:1"}, 0.0)
    core.install(table(2, route=2, ingress=((2, 1.0),)), {"b": "y:1"}, 1.0)
    assert (SID, 1) in core.fwd.routes  # frames already on route 1 still find it
    core.tick(1.0 + core_mod.RETIRED_ROUTE_KEEP_S + 0.1)
    assert (SID, 1) not in core.fwd.routes and (SID, 2) in core.fwd.routes


def test_a_stale_table_from_the_same_controller_is_ignored():
    core = RelayCore("a")
    client(core)
    core.install(table(5), {"b": "y:1"}, 0.0)
    assert core.install(table(4, route=9, ingress=((9, 1.0),)), {"b": "y:1"}, 0.1) == []
    core.controller_connected()  # a restarted controller numbers from 1 again
    assert core.install(table(1, route=9, ingress=((9, 1.0),)), {"b": "y:1"}, 0.2)


# -- one vocabulary: the simulator's relays and real relays give the controller the same plan ------


def _sim_driver(net: NetworkState, demands, strategy: str, options: RoutingOptions) -> Controller:
    c = Controller(net, strategy, options, heartbeat_timeout_s=math.inf)
    events = [RelayJoined(dc) for dc in net.datacenters]
    c.handle_all(events + [i for d in demands for i in interests_of(d)], 0.0)
    return c


def _relay_driver(net: NetworkState, demands, strategy: str, options: RoutingOptions) -> Controller:
    """Real relay cores, fed the frames real clients send, report over JSON."""
    cores = {dc: RelayCore(dc) for dc in net.datacenters}
    for d in demands:
        flags = RELIABLE | (Flag.DELAY_SENSITIVE if d.delay_sensitive else 0)
        pub = cores[d.source].connection()
        rate = d.max_rate_mbps if math.isfinite(d.max_rate_mbps) else None
        feed(cores[d.source], pub, encode_json(FrameType.HELLO, {"role": "client"}) + encode(
            FrameType.ADVERTISE, advertise_payload(d.wire_topic, max_rate_mbps=rate,
                                                   latency_budget_ms=d.latency_budget_ms),
            session=session_id(d.wire_topic), flags=flags))
        for sink in d.sinks:
            sub = cores[sink].connection()
            feed(cores[sink], sub, encode_json(FrameType.HELLO, {"role": "client"})
                 + encode(FrameType.SUBSCRIBE, d.wire_topic.encode(), session=session_id(d.wire_topic)))
    c = Controller(net, strategy, options, heartbeat_timeout_s=math.inf)
    events = [RelayJoined(dc) for dc in net.datacenters]
    reports = [Report(dc, json.loads(json.dumps(core.report()))) for dc, core in cores.items()]
    c.handle_all(events + reports, 0.0)
    return c


@pytest.mark.parametrize(("scenario", "strategy"), [("table1-us-east-asia-east.yaml", "multipath"),
                                                    ("fig1-broadcast-5dc.yaml", "multicast")])
def test_both_drivers_inputs_give_the_controller_the_same_plan(scenario, strategy):
    s = load_scenario(ROOT / "scenarios" / scenario)
    net = NetworkState.from_scenario(s)
    demands = [d for d in demands_from_scenario(s, net) if d.source not in d.sinks]
    options = RoutingOptions(fairness=s.routing.fairness)
    sim, relays = (drive(net, demands, strategy, options) for drive in (_sim_driver, _relay_driver))
    assert sim.sessions == relays.sessions
    assert sim.plan is not None and sim.plan.sessions == relays.plan.sessions
    assert sim.plan.tables == relays.plan.tables


def test_a_held_unary_publish_is_answered_once_its_fate_is_known():
    core = RelayCore("a")
    pub = client(core)
    ack_requested = RELIABLE | Flag.ACK_REQUESTED
    assert feed(core, pub, data(0, flags=ack_requested)) == []  # held, not yet answered
    (reply,) = [a for a in core.install(RelayTable("a", 1, {}, {"t": ()}), {}, 0.1)
                if isinstance(a, Reply)]
    assert reply.conn is pub and frame_flags(reply.data) & Flag.DROPPED  # nobody subscribes: dropped
    (reply,) = [a for a in feed(core, pub, data(1, flags=ack_requested)) if isinstance(a, Reply)]
    assert frame_flags(reply.data) & Flag.DROPPED  # known at once now
    core2 = RelayCore("a")
    pub2 = client(core2)
    feed(core2, pub2, data(0, flags=ack_requested))
    (reply,) = [a for a in core2.install(table(), {"b": "y:1"}, 0.1) if isinstance(a, Reply)]
    assert not frame_flags(reply.data) & Flag.DROPPED  # routed: delivered onwards
