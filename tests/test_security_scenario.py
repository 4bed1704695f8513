"""A scenario's `security:` block: the emulator runs with fresh credentials, the simulator refuses.

Unit checks of the schema, of the simulator's refusal and of the per-run credentials
(`stemflow.emu.credentials`); one emulated run with TLS and tokens on, where a client without
the TLS and token flags would be refused, so the run delivering everything shows they were used.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time

import pytest
from emu_support import emu_command, needs_emu
from stemflow.emu.credentials import client_topics, run_credentials
from stemflow.sim.__main__ import main as sim_main
from stemflow.sim.runner import run_strategy

from stemflow.scenario import ScenarioError, parse_scenario
from stemflow.security import tokens
from stemflow.security.permissions import Authenticator, Refused
from stemflow.security.tls import client_context, member_server_context

SCENARIO = {
    "name": "secure-two-dc",
    "datacenters": [{"name": "A"}, {"name": "B"}],
    "links": [{"a": "A", "b": "B", "rtt_ms": 10, "bandwidth_mbps": 40}],
    "clients": [{"name": "ca", "datacenter": "A"}, {"name": "cb", "datacenter": "B"},
                {"name": "cc", "datacenter": "B"}],
    "relay": {"parallel": 2},
    "tcp": {"rwnd": "256 kB"},
    "sessions": [
        {"id": "bulk", "publisher": "ca", "subscribers": ["cb"],
         "workload": {"type": "bulk", "size": "1 MB"}},
        {"id": "rr", "publisher": "cb", "subscribers": ["ca"], "priority": "delay-sensitive",
         "workload": {"type": "messages", "size": "1 KB", "count": 5, "request_response": True}},
    ],
    "strategies": ["multipath"],
}


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> None:
    """A TLS handshake in memory, the client checking `hostname`; raises what TLS refuses."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = set()
    for _ in range(10):
        for name, end in (("c", c), ("s", s)):
            if name not in done:
                try:
                    end.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == {"c", "s"}:
            return
    raise AssertionError("handshake did not finish")


def secure(tls: bool = True, tokens_on: bool = True):
    return parse_scenario({**SCENARIO, "security": {"tls": tls, "tokens": tokens_on}})


def test_security_is_off_by_default_and_strict():
    assert not parse_scenario(SCENARIO).security.enabled
    assert secure().security.tls and secure().security.tokens
    with pytest.raises(ScenarioError, match="mtls"):
        parse_scenario({**SCENARIO, "security": {"mtls": True}})


def test_the_simulator_refuses_security_with_a_one_line_reason(tmp_path, capsys):
    with pytest.raises(ScenarioError, match="only the emulation runs"):
        run_strategy(secure(tls=False), "multipath", 1, "t")
    f = tmp_path / "s.yaml"
    f.write_text(json.dumps({**SCENARIO, "security": {"tls": True}}))
    assert sim_main([str(f), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "security" in err and "stemflow emu" in err
    assert "--set security.tls=false" in err
    # and the override it suggests runs
    assert sim_main([str(f), "--out", str(tmp_path / "out"), "--quiet", "--no-plots",
                     "--set", "security.tls=false"]) == 0


def test_credentials_name_each_relay_and_grant_each_client_its_own_topics():
    s = secure()
    with run_credentials(s, {"A": "10.0.0.1", "B": "10.0.0.2"}, ["ca", "cb", "cc"]) as creds:
        assert "--insecure" not in creds.relay_args() + creds.controller_args()
        assert creds.status_args() == [f"--status-token={creds.status_token}"]  # a token may start with "-"
        # the relay's certificate carries its emulated address, which the client checks
        server = member_server_context(creds.ca_dir, "A", require_cert=False)
        client = client_context(creds.ca_dir / "ca.pem")
        handshake(client, server, "10.0.0.1")
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(client, server, "10.0.0.2")  # B's address: not A's certificate
        auth = Authenticator(tokens.load_verify_key(creds.verify_key))
        grants = {c: auth.admit(c, {"role": "client", "token": creds.token_files[c].read_text()},
                                time.time()) for c in ("ca", "cb", "cc")}
        auth.check_publish(grants["ca"], "bulk")
        auth.check_subscribe(grants["cb"], "bulk")
        auth.check_subscribe(grants["ca"], "rr")
        auth.check_publish(grants["ca"], "rr.reply")  # the responder answers
        auth.check_subscribe(grants["cb"], "rr.reply")  # the requester hears the answers
        for client, verb, topic in (("cc", "subscribe", "bulk"),  # cc is in no session
                                    ("cb", "publish", "bulk"),  # a subscriber, not the publisher
                                    ("ca", "subscribe", "bulk"),
                                    ("ca", "publish", "rr")):
            with pytest.raises(Refused):
                getattr(auth, f"check_{verb}")(grants[client], topic)
        directory = creds.directory
    assert not directory.exists()


def test_each_client_may_publish_and_subscribe_what_its_sessions_need():
    topics = client_topics(secure())
    assert topics["cc"] == (set(), set())
    assert topics["ca"] == ({"bulk", "rr.reply"}, {"rr"})
    assert topics["cb"] == ({"rr"}, {"bulk", "rr.reply"})


def test_flags_follow_the_block():
    with run_credentials(secure(tls=False, tokens_on=False), {"A": "10.0.0.1"}, ["ca"]) as creds:
        assert creds.relay_args() == ["--insecure"] and creds.controller_args() == ["--insecure"]
        assert creds.client_args("ca") == [] and creds.status_args() == []
    with run_credentials(secure(tls=True, tokens_on=False), {"A": "10.0.0.1"}, ["ca"]) as creds:
        assert "--insecure" in creds.relay_args()  # TLS alone: anyone may still publish
        assert creds.client_args("ca")[0] == "--ca"


@pytest.mark.emu
@needs_emu
def test_an_emulated_run_with_tls_and_tokens_delivers_and_records_it(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(json.dumps({**SCENARIO, "security": {"tls": True, "tokens": True}}))
    out = tmp_path / "out"
    proc = subprocess.run(emu_command(str(f), "--out", str(out), "--serial"),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["security"] == {"tls": True, "tokens": True}
    for c in manifest["delivery"]:
        assert c["received"] == c["expected"] and c["in_order"], c
    logs = " ".join(p.read_text() for p in (out / "logs" / "multipath").glob("relay-*.out"))
    assert "refused" not in logs.lower() and "closing" not in logs.lower(), logs[-2000:]
