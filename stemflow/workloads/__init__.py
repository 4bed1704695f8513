"""Workloads: what a session's publisher does, one module per kind, found by its scenario `type:`.

- `registry` — `WorkloadKind` (everything the scenario, routing, simulator and emulator need to
  know about one kind), `register`, and the lookup;
- `bulk` — move a given number of bytes as fast as the route allows;
- `messages` — unary messages, optionally answered (request-response);
- `stream` — a live stream: frames at a bitrate, each with a deadline;
- `video` — a live video broadcast: frames sized by an encoder's trace, key frames, freezes.
"""

from stemflow.workloads.registry import (
    Sample,
    UnknownWorkload,
    WorkloadKind,
    get_kind,
    kind_of,
    register,
    subscriber_label,
    workload_types,
)

__all__ = ["Sample", "UnknownWorkload", "WorkloadKind", "get_kind", "kind_of", "register",
           "subscriber_label", "workload_types"]
