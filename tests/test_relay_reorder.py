"""The egress relay's ordering of one (session, publisher), without sockets: held frames, gaps
given up, and the connections paused when a reliable session's held frames pass the limit."""

from __future__ import annotations

from stemflow.relay import sessions
from stemflow.relay.sessions import Reorder

FRAME = bytes(64 << 10)


class Conn:
    """A connection as the reorder state sees it: it can be held from reading."""

    def __init__(self) -> None:
        self.holds = 0

    def hold_reading(self) -> None:
        self.holds += 1

    def release_reading(self) -> None:
        self.holds -= 1


def small_limits(monkeypatch) -> None:
    """Limits of 16 frames, judged over windows of 4 frames (the relay's: 512 and 64)."""
    monkeypatch.setattr(sessions, "REORDER_MAX_BYTES", 16 * len(FRAME))
    monkeypatch.setattr(sessions, "REORDER_RECENT_FRAMES", 4)
    monkeypatch.setattr(sessions, "REORDER_PAUSE_MIN_FRAMES", 2)


def fill(st: Reorder, seqs, source: Conn, now: float = 0.0) -> int:
    """Hold `seqs` as the relay does; return how many frames were skipped."""
    out: list = []
    for seq in seqs:
        st.saw(source, seq)
        st.hold(seq, FRAME, now)
        if st.overfull and not st.overflow(source, seq, now):
            st.skip(out, now)
    return st.skipped


def test_a_reliable_gap_pauses_the_connection_far_ahead_instead_of_skipping(monkeypatch):
    small_limits(monkeypatch)
    st, ahead = Reorder(0, reliable=True), Conn()
    assert fill(st, range(1, 30), ahead) == 0  # frame 0 is late: hold, never skip
    assert ahead.holds == 1 and st.paused == {ahead}
    out: list = []
    st.saw(Conn(), 0)
    st.hold(0, FRAME, 0.0)
    st.release(out)  # frame 0 came: everything is in order again
    st.moved()
    assert len(out) == 30 and ahead.holds == 0 and not st.paused


def test_a_connection_near_the_gap_is_not_paused_it_may_carry_the_missing_frame(monkeypatch):
    small_limits(monkeypatch)
    st, far, near = Reorder(0, reliable=True), Conn(), Conn()
    fill(st, range(10, 40), far)
    fill(st, range(2, 4), near)
    assert far.holds == 1 and near.holds == 0


def test_when_the_gap_moves_connections_no_longer_far_ahead_are_read_again(monkeypatch):
    small_limits(monkeypatch)
    st, early, late = Reorder(0, reliable=True), Conn(), Conn()
    fill(st, [*range(1, 12), *range(13, 15)], Conn())  # 13 held
    fill(st, range(15, 23), early)  # at the limit: 15..22 are more than 8 past the gap at 0
    fill(st, range(23, 33), late)
    assert early.holds == late.holds == 1
    out: list = []
    st.saw(Conn(), 0)
    st.hold(0, FRAME, 0.0)
    st.release(out)  # frames 0..11 leave; the gap is at 12 now
    st.moved()
    assert early.holds == 0  # early's recent frames reach back to 18, 6 past the new gap
    assert late.holds == 1  # its recent frames are all far ahead


def test_past_the_hard_bound_even_a_reliable_gap_is_skipped(monkeypatch):
    small_limits(monkeypatch)
    st = Reorder(0, reliable=True)
    assert fill(st, range(1, 40), Conn()) == 1  # 2 x 16 frames held: frame 0 is given up
    assert st.next > 1


def test_a_live_gap_is_skipped_at_the_limit(monkeypatch):
    small_limits(monkeypatch)
    conn = Conn()
    assert fill(Reorder(0, reliable=False), range(1, 20), conn) == 1
    assert conn.holds == 0


def test_a_connection_whose_recent_frames_reach_back_to_the_gap_is_not_paused(monkeypatch):
    """A transit relay interleaves lagging streams on one connection: its latest frame is far
    ahead, but the gap's frame may still come on it."""
    small_limits(monkeypatch)
    st, mixed, ahead = Reorder(0, reliable=True), Conn(), Conn()
    fill(st, [s for i in range(1, 9) for s in (i, 40 + i)], mixed)  # 1, 41, 2, 42, ...
    fill(st, range(60, 70), ahead)
    assert mixed.holds == 0 and ahead.holds == 1


def test_a_paused_connection_that_brings_frames_near_the_gap_is_read_again(monkeypatch):
    small_limits(monkeypatch)
    st, conn = Reorder(0, reliable=True), Conn()
    fill(st, range(30, 50), conn)
    assert conn.holds == 1
    for seq in range(1, 2 * sessions.REORDER_RECENT_FRAMES):  # what it had received before
        st.saw(conn, seq)
        if not conn.holds:
            break
    assert conn.holds == 0 and not st.paused


def test_a_paused_gap_is_read_again_only_when_nothing_else_brings_frames():
    st, conn = Reorder(0, reliable=True), Conn()
    st.hold(5, FRAME, 0.0)
    st.paused.add(conn)
    conn.hold_reading()
    stall = sessions.REORDER_PAUSE_STALL_S
    st.free_arrival = stall  # frames still come on a connection that is not paused
    assert not st.stalled(1.5 * stall)
    assert st.stalled(2.1 * stall)  # nothing came for longer than the stall time
    assert conn.holds == 0 and st.no_pause


def test_a_timed_out_gap_takes_the_later_gaps_that_are_as_old_with_it():
    st = Reorder(0, reliable=True)
    for seq in (2, 4, 6):
        st.hold(seq, FRAME, 0.0)  # 0, 1, 3 and 5 were lost together
    st.hold(9, FRAME, 9.0)  # 7 and 8 are just late
    out: list = []
    st.expire(out, 10.0, timeout_s=5.0)
    assert st.next == 7 and st.skipped == 4 and len(out) == 3
    assert list(st.held) == [9] and st.since == 9.0
