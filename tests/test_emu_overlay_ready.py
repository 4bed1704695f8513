"""The emulator's wait for an overlay to come up: what counts as ready (no processes started)."""

from __future__ import annotations

from stemflow.emu.overlay_ready import missing

RELAYS = ["a", "b", "c"]
MESH = [("a", "b"), ("a", "c"), ("b", "c")]


def _link(peer: str, connections: int = 3, rtt_ms: float | None = 10.0) -> dict:
    return {"peer": peer, "connections": connections, "rtt_ms": rtt_ms}


def _status(**links: list[dict]) -> dict:
    return {"relays": {r: {} for r in links}, "reports": {r: {"links": ln} for r, ln in links.items()}}


def test_every_relay_registered_with_all_connections_to_every_other_is_ready():
    ok = _status(a=[_link("b"), _link("c")], b=[_link("a"), _link("c")], c=[_link("a"), _link("b")])
    assert missing(ok, RELAYS, MESH, parallel=3) == []


def test_a_relay_that_has_not_registered_is_named():
    st = _status(a=[_link("b"), _link("c")], b=[_link("a"), _link("c")])
    assert "relay c has not registered" in missing(st, RELAYS, MESH, parallel=3)


def test_a_link_without_an_rtt_or_with_too_few_connections_is_not_ready():
    st = _status(a=[_link("b", rtt_ms=None), _link("c", connections=2)],
                 b=[_link("a"), _link("c")], c=[_link("a"), _link("b")])
    assert missing(st, RELAYS, MESH, parallel=3) == ["relay a has no measured link to b",
                                               "relay a has 2 of 3 connections to c"]


def test_a_registered_relay_that_never_sent_a_full_report_is_not_ready():
    st = {"relays": {r: {} for r in RELAYS}, "reports": {}}
    assert len(missing(st, RELAYS, MESH, parallel=3)) == 6


def test_relays_that_share_no_link_need_not_connect():
    """A line a - b - c: a and c cannot reach each other in the emulated network."""
    st = _status(a=[_link("b")], b=[_link("a"), _link("c")], c=[_link("b")])
    assert missing(st, RELAYS, [("a", "b"), ("b", "c")], parallel=3) == []
