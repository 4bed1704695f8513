"""The relay: an asyncio process per datacenter that forwards frames by the controller's tables.

Modules: `server` (the listening socket, the data path, the controller link), `peers` (P
persistent TCP connections per peer relay, striping, pings), `outbox` (bounded priority queues
and backpressure), `forwarding` (tables compiled for the data path, weighted picks), `sessions`
(local subscribers and publishers, order restoration, frames waiting for a route), `measure`
(TCP_INFO and RTT samples). `python -m stemflow.relay` or `stemflow relay` runs one.

Known limits: a session is routed from one ingress relay (the controller's `Demand.source`);
publishers of the same topic at other relays reach only their own relay's subscribers.
"""
