"""The simulator's named model parameters: what each means, its default, and why that default.

Owns the names a scenario may set under `parameters:` for the simulator (and with
`--set parameters.NAME=VALUE`), their defaults, and the check that a scenario names no unknown
one (names with a dot, like `emu.scale`, belong to another driver and are left alone).
Everything else the model needs comes from the scenario's own fields (`tcp`, `relay`, `controller`,
links, access hops); a parameter here is a modelling choice the scenario schema does not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from stemflow.scenario import Scenario, ScenarioError

MOVED = {
    "controller_rtt_ms": "no longer a parameter: place the controller with `controller: "
                         "{datacenter: NAME}` (each relay's round trip to it follows from the links)",
    "controller_decision_ms": "no longer a parameter: the controller's decision costs no simulated "
                              "time; its set-up exchange is charged over each relay's round trip "
                              "to it (`controller: {datacenter: NAME}`)",
}
"""Parameters that were removed, and what a scenario that still names one should write instead."""


@dataclass(frozen=True)
class ModelParameters:
    """Named knobs of the model; each field's comment says what it stands for."""

    initial_window_segments: float = 10.0
    """TCP initial window in MSS (RFC 6928; Linux default since 2.6.39). Slow start doubles it
    every RTT until the connection reaches its model rate."""

    slow_start_after_idle: float = 1.0
    """1: a persistent connection idle for longer than its RTO restarts from the initial window
    (RFC 5681 §4.1; Linux `net.ipv4.tcp_slow_start_after_idle` = 1 by default). 0: it keeps its
    window."""

    direct_persistent: float = 0.0
    """0: direct TCP opens a new connection (one handshake) for every transfer and message, as a
    client without connection reuse does. 1: one connection per session, opened once."""

    notsent_lowat_bytes: float = 131072.0
    """Unsent bytes a relay lets sit in each TCP socket (TCP_NOTSENT_LOWAT). A delay-sensitive
    frame jumps the relay's own queue but waits behind these bytes on a busy connection;
    128 KiB is the usual choice of latency-aware multiplexers (e.g. HTTP/2 servers)."""

    reply_bytes: float = 0.0
    """Size of the reply in a request-response exchange; 0 means as large as the request."""

    @classmethod
    def from_scenario(cls, s: Scenario) -> ModelParameters:
        """The scenario's `parameters:` over the defaults; an unknown name is a `ScenarioError`."""
        return cls.from_mapping(s.parameters, s.source)

    @classmethod
    def from_mapping(cls, values: Mapping[str, float], source: str = "<memory>") -> ModelParameters:
        known = {f.name for f in fields(cls)}
        mine = {k: v for k, v in values.items() if "." not in k}  # "emu.x": another driver's
        for name in mine:
            if name in MOVED:
                raise ScenarioError(source, f"parameters.{name}", MOVED[name])
            if name not in known:
                raise ScenarioError(source, f"parameters.{name}",
                                    f"unknown model parameter; known: {', '.join(sorted(known))}")
        return cls(**{k: float(v) for k, v in mine.items()})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
