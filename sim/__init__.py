"""The simulator: a fluid, flow-level model of the overlay on SimPy, driving the real controller.

Modules, each with one job:
- `fluid`     — max-min fair rates over shared resources (progressive filling, incremental);
- `transfers` — those rates in simulated time: progress, finish instants, utilization;
- `transport` — a TCP connection's handshake, slow start and steady model rate;
- `routes`    — what the relays' forwarding tables do to a session (hop shares, paths);
- `model`     — the SimPy world: links as resources, relays with tables, the control plane;
- `latency`   — delays of messages and frames (propagation, serialization, queueing, relays);
- `workloads` — what sessions' stories are told with (flows, opening, recording); each workload
  kind tells its own in `stemflow.workloads`;
- `runner`    — one scenario through the model per strategy, into the results schema;
- `report`    — the summary table and the figures; `params` — the named model parameters;
- `sweep`     — the gain sweeps behind papers/stemflow-infocom17-demo/MODEL.md.
`python -m stemflow.sim SCENARIO` is the command (`__main__`).
"""
