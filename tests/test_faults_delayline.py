"""A delay line reshaped while it runs: the commands a link fault sends, and a link that is down."""

import os

from stemflow.emu.delayline import CommandReader, DirectionParams, Scheduler


def test_a_delay_line_takes_new_parameters_while_it_runs():
    got = []
    r, w = os.pipe()
    reader = CommandReader(r, lambda ab, ba: got.append((ab, ba)))
    os.write(w, b'{"a2b": {"rate_mbps": 10, "delay_ms": 5, "down": true}, "b2a": {"rate_mbps": 20, '
                b'"delay_ms": 7, "loss": 0.01}}\nnot json\n{"a2b": {"rate_')
    assert reader.read()
    [(ab, ba)] = got  # the malformed line changed nothing; the partial one waits for its end
    assert (ab.rate_bps, ab.delay_s, ab.down) == (10e6, 0.005, True)
    assert (ba.rate_bps, ba.loss, ba.down) == (20e6, 0.01, False)
    os.close(w)
    assert not reader.read()  # the orchestrator closed its end
    os.close(r)
    down = Scheduler(DirectionParams(rate_bps=10e6, delay_s=0.005, down=True))
    assert down.admit(0.0, 1500) is None and down.stats.lost == 1


def test_a_delay_line_reports_its_counters_when_asked_and_changes_nothing():
    got, reports = [], []
    r, w = os.pipe()
    reader = CommandReader(r, lambda ab, ba: got.append((ab, ba)), lambda: reports.append(1))
    os.write(w, b'{"stats": true}\n[1, 2]\n{"stats": true}\n')
    assert reader.read()
    assert reports == [1, 1] and got == []  # a list is not a command: ignored, no traceback
    os.close(w)
    os.close(r)
