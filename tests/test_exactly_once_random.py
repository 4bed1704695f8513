"""A seeded randomized fault run (Jepsen-style), small enough for CI: `faultcheck.py`."""

from __future__ import annotations

import pytest
from faultcheck import run, schedule

pytestmark = pytest.mark.timeout(120)

SEED = 2  # kills both transit relays, restarts both, cuts a publisher and a subscriber
FAULTS = 6
DURATION_S = 8.0


def test_the_schedule_is_seeded_and_valid():
    plan = schedule(SEED, FAULTS, DURATION_S)
    assert plan == schedule(SEED, FAULTS, DURATION_S) and len(plan) == FAULTS
    assert plan != schedule(SEED + 1, FAULTS, DURATION_S)
    dead: set[str] = set()
    for f in plan:  # a relay is restarted only after it was killed, and killed only when alive
        if f.kind == "kill":
            assert f.target not in dead
            dead.add(f.target)
        elif f.kind == "restart":
            dead.remove(f.target)
    assert all(0 < f.at_s < DURATION_S - 0.5 for f in plan)


def test_every_acknowledged_message_reaches_every_subscriber_once_in_order(tmp_path):
    out = run(tmp_path, SEED, FAULTS, DURATION_S)
    assert not out.problems, f"faults {out.faults}:\n" + "\n".join(out.problems)
    assert out.resume_gaps == 0
    assert min(out.sent.values()) > 0.5 * DURATION_S / 0.01  # the publishers kept going
