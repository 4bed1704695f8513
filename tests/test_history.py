"""The relay's topic history without sockets (`stemflow.relay.history`): rules, the store's
bounds and completeness, and how a request is answered locally or from the best peer."""

from __future__ import annotations

import json

import pytest

from stemflow.protocol import Flag, FrameDecoder, FrameType, data_header, parse_history_request
from stemflow.relay.history import (
    QUERY_TIMEOUT_S,
    History,
    HistoryError,
    HistoryPolicy,
    Rule,
    Store,
    ToClient,
    ToPeer,
)

SID = 7


def data(seq: int, body: bytes = b"x", origin: int = 1) -> bytes:
    return data_header(SID, seq, int(Flag.RELIABLE), origin, len(body)) + body


def frames(out) -> list:
    return FrameDecoder().receive_data(out.data)


def test_rules_parse_and_bad_ones_say_what_is_expected():
    assert Rule.parse("chat.*=100/3600") == Rule("chat.*", 100, 3600.0)
    assert Rule.parse(">=5").keep_s == float("inf")
    for bad, why in (("chat", "PATTERN=COUNT"), ("=5", "PATTERN=COUNT"), ("a=0", "COUNT must be"),
                     ("a=ten", "ten"), ("a=5/-1", "SECONDS positive"), ("a..b=5", "empty token")):
        with pytest.raises(HistoryError, match=why):
            Rule.parse(bad)
    p = HistoryPolicy.parse(["chat.*=10", ">=1"])
    assert p.of("chat.x").count == 10 and p.of("video").count == 1
    assert HistoryPolicy.parse([]).of("chat.x") is None


def test_a_store_keeps_the_newest_within_count_and_age_and_knows_when_it_is_complete():
    s = Store(Rule(">", 3, keep_s=10.0))
    for i in range(3):
        s.add(bytes([i]), now=float(i))
    assert not s.complete(2.0)  # recording for 2 s of a 10 s keep, nothing dropped: maybe partial
    s.add(b"\x03", now=3.0)
    assert s.last(10, 3.0) == [b"\x01", b"\x02", b"\x03"] and s.complete(3.0)  # dropped one: full
    assert s.last(10, 12.5) == [b"\x03"]  # the others are older than 10 s
    s.interrupted()
    assert not s.complete(13.0) and s.covered_s(13.0) == 0.0
    s.add(b"\x04", now=20.0)
    assert s.covered_s(25.0) == 5.0 and not s.full


def test_delivered_runs_are_cut_into_frames_and_kept_as_history_frames():
    h = History(HistoryPolicy.parse(["room=2"]))
    run = data(0, b"a") + data(1, b"bb") + data(2, b"ccc")
    h.delivered("room", SID, [(memoryview(run), 3)], now=1.0)
    h.delivered("other", 8, [(data(0), 1)], now=1.0)  # no rule: not kept
    assert list(h.stores) == [SID]
    (out,) = h.request("conn", 42, "room", SID, 5, peers=[], now=2.0)
    assert isinstance(out, ToClient) and out.conn == "conn"
    *past, end = frames(out)
    assert [(f.type, f.seq, f.payload) for f in past] == [(FrameType.HISTORY, 1, b"bb"),
                                                         (FrameType.HISTORY, 2, b"ccc")]
    assert end.type is FrameType.HISTORY_END and end.seq == 42
    assert json.loads(end.payload) == {"count": 2, "covered_s": 1.0, "complete": True}


def test_a_topic_without_a_rule_is_refused_with_the_flag_to_use():
    (out,) = History(HistoryPolicy.parse(["room=2"])).request("c", 1, "news", SID, 5, [], 0.0)
    assert "--history" in json.loads(frames(out)[0].payload)["error"]


def test_an_incomplete_store_asks_the_peers_and_answers_from_the_best():
    h = History(HistoryPolicy.parse(["room=10"]))
    h.delivered("room", SID, [(data(5), 1)], now=9.0)  # joined late: one message
    asks = h.request("c1", 1, "room", SID, 10, peers=["p", "q"], now=10.0)
    assert sorted(a.peer for a in asks if isinstance(a, ToPeer)) == ["p", "q"]
    ask = frames(asks[0])[0]
    assert ask.type is FrameType.HISTORY_REQUEST and parse_history_request(ask.payload) == ("room", 10)
    assert h.request("c2", 2, "room", SID, 3, ["p", "q"], 10.1) == []  # joins the open query
    p_answer = History(HistoryPolicy.parse(["room=10"]))
    p_answer.delivered("room", SID, [(b"".join(data(i) for i in range(6)), 6)], now=0.0)
    (reply,) = p_answer.peer_request("me", ask.seq, SID, 10, now=10.0)
    for f in frames(reply)[:-1]:
        h.peer_frame("conn-p", SID, data_header(SID, f.seq, 0, 1, 1) + b"x")
    end = frames(reply)[-1]
    assert h.peer_end("conn-p", "p", SID, end.seq, json.loads(end.payload), 10.2) == []  # q owes
    out = h.tick(10.0 + QUERY_TIMEOUT_S + 0.1)  # q never answers
    assert [o.conn for o in out] == ["c1", "c2"]
    assert [f.seq for f in frames(out[0])[:-1]] == list(range(6))  # p recorded longer than we did
    assert [f.seq for f in frames(out[1])[:-1]] == [3, 4, 5]
    assert h.queries == {}
    assert h.peer_end("conn-q", "q", SID, end.seq, {"count": 0}, 13.0) == []  # late: ignored
    assert h.counters["history_late_answers"] == 1


def test_stores_together_stay_within_the_relay_bound(monkeypatch):
    import stemflow.relay.history as history
    monkeypatch.setattr(history, "TOTAL_BYTES", 1000)
    h = History(HistoryPolicy.parse([">=100"]))
    for t in range(20):
        h.delivered(f"t{t % 4}", t % 4, [(data(t, b"y" * 100), 1)], now=float(t))
    assert sum(s.bytes for s in h.stores.values()) <= 1000
    assert h.counters["history_evicted"] > 0
    assert h.stores[3].frames[-1][0] == 19.0  # the newest stays


def test_a_bad_history_flag_is_one_line_at_start_up(capsys):
    from stemflow.relay.__main__ import parse_args
    with pytest.raises(SystemExit):
        parse_args(["--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1",
                    "--history", "chat.*=lots"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--history: history rule 'chat.*=lots'" in err and "Traceback" not in err
    args = parse_args(["--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1",
                       "--history", "chat.*=100/3600", "--history", ">=10"])
    assert [r.count for r in args.history.rules] == [100, 10]
