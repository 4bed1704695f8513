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


def test_cli_reports_an_unreachable_relay():
    p = cli("pub", "--relay", "127.0.0.1:1", "news", "x")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 1 and b"stemflow pub" in err
