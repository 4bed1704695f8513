"""`stemflow pub` and `stemflow sub` end to end, through two relay processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from relaynet import ROOT, Overlay

pytestmark = pytest.mark.timeout(60)


def cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stemflow.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_pub_sub_cli_end_to_end(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    sub = None
    try:
        sub = cli("sub", "--relay", o.addr["b"], "news", "--count", "4")
        o.wait_status(lambda s: any(i["topic"] == "news" and i["subscribers"] == 1
                                    for i in s["reports"].get("b", {}).get("interest", [])))
        pub = cli("pub", "--relay", o.addr["a"], "news", "-", stdin=subprocess.PIPE)
        out, err = pub.communicate(b"first line\nsecond line\nthird line\n", timeout=20)
        assert pub.returncode == 0, err.decode()
        one = cli("pub", "--relay", o.addr["a"], "--relay", o.addr["b"], "news", "from the argument")
        assert one.wait(20) == 0, one.stderr.read().decode()
        out, err = sub.communicate(timeout=20)
        assert sub.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        # in order per publisher; the two publishers' messages may interleave
        assert [x for x in lines if x != "from the argument"] == ["first line", "second line",
                                                                  "third line"]
        assert lines.count("from the argument") == 1
    finally:
        if sub is not None and sub.poll() is None:
            sub.kill()
        o.close()


def test_pub_exits_non_zero_when_nobody_subscribes(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    try:
        p = cli("pub", "--relay", o.addr["a"], "nobody-listens", "hello")
        _, err = p.communicate(timeout=20)
        assert p.returncode == 1 and b"nobody subscribes to 'nobody-listens'" in err, err.decode()
    finally:
        o.close()


def test_cli_reports_an_unreachable_relay():
    p = cli("pub", "--relay", "127.0.0.1:1", "news", "x")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 1 and b"stemflow pub" in err


def test_sync_client_and_choice_among_several_relays(tmp_path):
    from stemflow.client import SyncClient

    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    try:
        with SyncClient(["127.0.0.1:1", o.addr["b"]]) as sub_c:  # the dead address is skipped
            assert sub_c.relay == "b"
            messages = sub_c.subscribe("sync", timeout_s=10)
            with SyncClient(o.addr["a"]) as pub_c:
                assert pub_c.relay == "a"
                pub_c.publish("sync", b"one")
                pub_c.publish("sync", b"two", delay_sensitive=True)
                assert [next(messages).data, next(messages).data] == [b"one", b"two"]
    finally:
        o.close()


def test_a_message_over_the_frame_limit_is_refused_at_the_cli(tmp_path):
    from stemflow.protocol import MAX_PAYLOAD_BYTES

    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    try:
        pub = cli("pub", "--relay", o.addr["a"], "news", "-", stdin=subprocess.PIPE)
        _, err = pub.communicate(b"small\n" + b"x" * (MAX_PAYLOAD_BYTES + 1) + b"\n", timeout=20)
        assert pub.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and "line 2 of stdin" in lines[0] and "1 MiB" in lines[0]
    finally:
        o.close()


def test_request_and_reply_cli_with_headers(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    rep = sub = None
    try:
        rep = cli("reply", "--relay", o.addr["b"], "svc.time", "noon", "--count", "1")
        sub = cli("sub", "--relay", o.addr["b"], "svc.time", "--count", "2", "--headers")
        o.wait_status(lambda s: any(i["topic"] == "svc.time" and i["subscribers"] == 2
                                    for i in s["reports"].get("b", {}).get("interest", [])))
        req = cli("request", "--relay", o.addr["a"], "svc.time", "when?", "-H", "X-Trace: 7",
                  "--timeout", "20")
        out, err = req.communicate(timeout=30)
        assert req.returncode == 0 and out == b"noon\n", err.decode()
        assert rep.wait(20) == 0
        pub = cli("pub", "--relay", o.addr["a"], "svc.time", "plain", "-H", "X-Kind:note")
        assert pub.wait(20) == 0, pub.stderr.read().decode()
        out, _ = sub.communicate(timeout=20)
        lines = out.decode().splitlines()
        assert "X-Trace: 7" in lines and "when?" in lines and lines[-2:] == ["X-Kind: note", "plain"]
        bad = cli("request", "--relay", o.addr["a"], "svc.time", "x", "-H", "no colon")
        _, err = bad.communicate(timeout=20)
        assert bad.returncode == 2 and b"NAME:VALUE" in err and b"Traceback" not in err
        none = cli("request", "--relay", o.addr["a"], "svc.nobody", "x")
        _, err = none.communicate(timeout=20)
        assert none.returncode == 1 and b"no responders" in err, err.decode()
    finally:
        for p in (rep, sub):
            if p is not None and p.poll() is None:
                p.kill()
        o.close()


def test_sub_to_a_pattern_prints_each_message_with_its_topic(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")
    sub = None
    try:
        sub = cli("sub", "--relay", o.addr["b"], "chat.*", "--count", "2")
        o.wait_status(lambda s: "chat.*" in s.get("patterns", {}))
        for topic, text in (("chat.room1", "hello"), ("chat.room1.typing", "x"),
                            ("chat.room2", "there")):
            cli("pub", "--relay", o.addr["a"], topic, text).wait(20)
        out, err = sub.communicate(timeout=20)
        assert sub.returncode == 0, err.decode()
        assert out.decode().splitlines() == ["chat.room1\thello", "chat.room2\tthere"]
    finally:
        if sub is not None and sub.poll() is None:
            sub.kill()
        o.close()
