"""Fuzzing every parser that takes input from outside: the frame decoder, the relay core, the
controller (its sans-IO object and its connection handler), the gateway's browser messages and
the scenario loader. Each may raise its own error type only, never crash.

CI runs about 10^4 inputs in all, derandomized (a fixed seed), in a few seconds;
`benchmarks/fuzz.py` throws 10^6 at running processes.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemflow.controller import Controller, Problem, RelayJoined, Report
from stemflow.controller_server import ControllerServer, RelayConnection
from stemflow.gateway import wire
from stemflow.network import NetworkState
from stemflow.protocol import (
    HEADER,
    VERSION,
    FrameDecoder,
    FrameType,
    ProtocolError,
    ReceiveBuffer,
    encode,
    encode_json,
    session_id,
)
from stemflow.relay.core import Close, RelayCore
from stemflow.scenario import ScenarioError, parse_scenario
from stemflow.security.schema import MAX_JSON_DEPTH, SchemaError, loads


def fuzz(examples: int) -> settings:
    """A fixed seed (derandomized): CI sees the same inputs every run, a failure reproduces."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYS = ["links", "interest", "peer", "rtt_ms", "min_rtt_ms", "loss", "delivered_mbps", "topic",
        "publishers", "subscribers", "priority", "max_rate_mbps", "latency_budget_ms", "counters",
        "dc", "address", "role", "token", "index", "table_version"]
LEAVES = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
          | st.text(max_size=8) | st.sampled_from(["a", "b", "c", "bulk", "delay_sensitive", "peer",
                                                    "client", "t", "127.0.0.1:1"]))
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5),
                    max_leaves=24)


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _frame(typ: int, payload: bytes, session: int = 0, flags: int = 0, seq: int = 0) -> bytes:
    return HEADER.pack(VERSION, typ, flags, 0, session, 7, seq, len(payload)) + payload


FRAME_TYPES = st.sampled_from([int(t) for t in FrameType]) | st.integers(0, 255)
TOPICS = st.sampled_from(["t", "chat.a", "x" * 300, ""]) | st.text(max_size=6)


@st.composite
def frames(draw) -> bytes:
    """A plausible frame (known type, a payload that is JSON, a topic, or junk) or raw bytes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=64))
    typ = draw(FRAME_TYPES)
    if kind == 1:
        payload = json.dumps(draw(JSON)).encode()
    elif kind == 2:
        topic = draw(TOPICS)
        payload = topic.encode()
        session = session_id(topic) if draw(st.booleans()) else draw(st.integers(0, 2**32 - 1))
        return _frame(typ, payload, session, draw(st.integers(0, 255)), draw(st.integers(0, 2**64 - 1)))
    elif kind == 3:
        payload = deep(draw(st.integers(1, 2000)))
    else:
        payload = draw(st.binary(max_size=64))
    return _frame(typ, payload, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 255)))


@fuzz(2000)
@given(st.lists(frames(), max_size=6), st.integers(1, 97))
def test_the_frame_decoder_raises_only_protocol_errors(chunks: list[bytes], cut: int) -> None:
    data = b"".join(chunks)
    d = FrameDecoder()
    try:
        for i in range(0, len(data), cut):
            d.receive_data(data[i:i + cut])
        d.receive_data(b"")
    except ProtocolError:
        pass


def _feed_core(core: RelayCore, conn, data: bytes) -> list:
    rb = ReceiveBuffer()
    rb.get_buffer()[:len(data)] = data
    rb.updated(len(data))
    return core.receive(conn, rb, 1.0)


@fuzz(2000)
@given(st.sampled_from([b"", encode_json(FrameType.HELLO, {"role": "client"}),
                        encode_json(FrameType.HELLO, {"role": "peer", "dc": "b"})]),
       st.lists(frames(), max_size=6))
def test_the_relay_core_answers_bad_input_with_close_never_an_exception(hello: bytes,
                                                                        chunks: list[bytes]) -> None:
    core = RelayCore("a")
    conn = core.connection()
    actions = _feed_core(core, conn, hello + b"".join(chunks)[:200_000])
    closes = [a for a in actions if isinstance(a, Close)]
    assert len(closes) <= 1
    core.tick(100.0)
    core.connection_lost(conn, 101.0)


def _controller() -> Controller:
    c = Controller(NetworkState(datacenters=(), links={}, clients={}, parallel=4),
                   heartbeat_timeout_s=1e9)
    c.handle_all([RelayJoined("a"), RelayJoined("b")], 0.0)
    return c


@fuzz(1500)
@given(JSON)
def test_the_controller_turns_any_report_into_problems_not_exceptions(body: object) -> None:
    actions = _controller().handle(Report("a", body), 1.0)
    assert all(isinstance(a.message, str) for a in actions if isinstance(a, Problem))


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):
        return default


def _relay_connection() -> tuple[ControllerServer, RelayConnection, _Transport]:
    server = ControllerServer(_controller(), grace_s=0.0)
    conn = RelayConnection(server)
    t = _Transport()
    conn.connection_made(t)  # type: ignore[arg-type]
    return server, conn, t


REGISTERS = st.sampled_from([b"", encode_json(FrameType.REGISTER, {"dc": "a", "address": "127.0.0.1:1"})])


@fuzz(1500)
@given(REGISTERS, st.lists(frames() | JSON.map(lambda b: encode_json(FrameType.REPORT, b)), max_size=5))
def test_the_controller_connection_answers_bad_frames_with_an_error_frame(register: bytes,
                                                                          chunks: list[bytes]) -> None:
    _, conn, t = _relay_connection()
    conn.data_received(register + b"".join(chunks))
    if t.closed:
        assert t.out and FrameDecoder().receive_data(t.out[-1])[-1].type is FrameType.ERROR


def test_deep_json_is_refused_before_parsing_not_with_a_recursion_error() -> None:
    for payload in (deep(100_000), b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(SchemaError, match="nested"):
            loads(payload, "REPORT")
    assert loads(deep(MAX_JSON_DEPTH), "REPORT") == json.loads(deep(MAX_JSON_DEPTH))
    assert loads(b'"[[[[\\"[["', "x") == '[[[["[['  # brackets inside strings do not count
    _, conn, t = _relay_connection()
    conn.data_received(encode_json(FrameType.REGISTER, {"dc": "a"})
                       + encode(FrameType.REPORT, deep(100_000)))
    assert t.closed and b"nested" in t.out[-1]


@fuzz(1500)
@given(st.binary(max_size=80)
       | st.builds(lambda op, b: bytes([op]) + b, st.sampled_from(list(wire.BrowserOp)),
                   st.binary(max_size=80))
       | st.just(bytes([wire.BrowserOp.HELLO, 1]) + deep(50_000)))
def test_the_gateway_decodes_browser_messages_or_says_they_are_malformed(data: bytes) -> None:
    with contextlib.suppress(wire.MalformedMessage):
        wire.decode(data)


SCENARIO_KEYS = ["name", "datacenters", "links", "clients", "sessions", "routing", "relay", "tcp",
                 "mesh", "rtt_ms", "bandwidth_mbps", "a", "b", "type", "size", "workload", "source",
                 "sinks", "rate", "start_s", "security"]
SCENARIO = st.recursive(LEAVES | st.sampled_from(["1 GB", "10 Mbit/s", "5 ms", "us-east1"]),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(SCENARIO_KEYS), inner, max_size=5),
                        max_leaves=20)


@fuzz(1000)
@given(SCENARIO)
def test_the_scenario_loader_raises_only_scenario_errors(data: object) -> None:
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    with contextlib.suppress(ScenarioError):
        parse_scenario(yaml.safe_load(text))
