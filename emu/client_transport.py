"""The Stemflow client API (`stemflow.client`) as a workload transport of the emulator.

Owns the mapping of a scenario session onto the Pub/Sub API: the session id is the topic; a
workload kind's messages go through a reliable streaming publisher (bulk data, stream frames)
or, if the kind is `unary`, each through `publish` (messages); a request-response session's
replies travel on the topic `<id>.reply`; the session's priority becomes the delay-sensitive
flag; a run with `security:` on connects over TLS and with the client's token. It also sets
the scenario's congestion control on the client's own connection (the host
default may differ and cannot always be changed). Measuring is `stemflow.emu.workload`'s.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

from stemflow.emu.workload import Transport, answered

from stemflow.client import Client, Stream, Subscription, connect
from stemflow.scenario import Priority, Session
from stemflow.security.tls import client_context
from stemflow.workloads.registry import kind_of

REPLY_SUFFIX = ".reply"
FLUSH_TIMEOUT_S = 10.0
FLUSH_POLL_S = 0.01


class StemflowTransport(Transport):
    def __init__(self, relay: str, session: Session, name: str, cc: str | None = None,
                 max_rate_mbps: float | None = None, ca_file: str | None = None,
                 token: str | None = None):
        self.relay, self.session, self.name, self.cc = relay, session, name, cc
        self.ca_file, self.token = ca_file, token
        self.max_rate_mbps = max_rate_mbps
        self.topic = session.id
        self.delay_sensitive = session.priority is Priority.DELAY_SENSITIVE
        self.unary = kind_of(session.workload).unary
        self.rr = answered(session)
        self.client: Client | None = None
        self.stream: Stream | None = None
        self.sub: Subscription | None = None
        self.reply_sub: Subscription | None = None

    async def _connect(self) -> Client:
        c = await connect(self.relay, token=self.token,
                          tls=client_context(self.ca_file) if self.ca_file else None)
        sock = c._transport.get_extra_info("socket") if c._transport is not None else None
        if self.cc and sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.cc.encode())
        self.client = c
        return c

    # -- publisher ------------------------------------------------------------------------------

    async def open_publisher(self) -> None:
        c = await self._connect()
        if self.rr:
            self.reply_sub = await c.subscribe(self.topic + REPLY_SUFFIX)
        if not self.unary:
            self.stream = c.open_stream(self.topic, delay_sensitive=self.delay_sensitive,
                                        max_rate_mbps=self.max_rate_mbps,
                                        latency_budget_ms=self.session.latency_budget_ms)

    async def publish(self, data: bytes) -> None:
        assert self.client is not None
        if self.stream is not None:
            await self.stream.write(data)
        else:
            await self.client.publish(self.topic, data, delay_sensitive=self.delay_sensitive,
                                      max_rate_mbps=self.max_rate_mbps,
                                      latency_budget_ms=self.session.latency_budget_ms)

    async def replies(self) -> AsyncIterator[bytes]:
        assert self.reply_sub is not None
        async for m in self.reply_sub:
            yield m.data

    # -- subscriber -----------------------------------------------------------------------------

    async def open_subscriber(self) -> None:
        c = await self._connect()
        self.sub = await c.subscribe(self.topic)

    async def messages(self) -> AsyncIterator[bytes]:
        assert self.sub is not None
        async for m in self.sub:
            yield m.data

    async def reply(self, data: bytes) -> None:
        assert self.client is not None
        await self.client.publish(self.topic + REPLY_SUFFIX, data,
                                  delay_sensitive=self.delay_sensitive)

    async def close(self) -> None:
        if self.client is None:
            return
        transport = self.client._transport
        await self.client.close()
        # close() hands the last bytes to asyncio; let them reach the kernel before we exit
        deadline = asyncio.get_running_loop().time() + FLUSH_TIMEOUT_S
        while (transport is not None and transport.get_write_buffer_size()
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(FLUSH_POLL_S)
