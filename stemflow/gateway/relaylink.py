"""The gateway's connections to its relay, through `stemflow.client` only.

Owns which `Client` carries what: one subscribes to every topic a browser of this gateway reads,
and one per publishing class (reliable or live, delay-sensitive or bulk), because a client fixes
a topic's class when it first advertises it and browsers publish one topic in several classes
(chat text ahead of file fragments). All browsers of a gateway share these connections; the
relay sees one subscriber and up to four publishers per gateway. Owns also the watch on the
relay (a ping each `WATCH_INTERVAL_S`): losing it is fatal to the gateway, whose browsers then
reconnect to another one. What reaches browsers, and when, is the server's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from stemflow.client import Client, ClientError, Message, Stream, Subscription, connect
from stemflow.gateway import envelope

WATCH_INTERVAL_S = 1.0
"""How often the relay is pinged; with TCP's own failure detection, a relay killed outright is
noticed at once (connection reset) and a silent one within about a second."""
HISTORY_TIMEOUT_S = 5.0
"""How long a history request may take before the browser is told it is unavailable."""

PublisherKey = tuple[bool, bool]
"""(reliable, delay_sensitive)."""


def whole_messages(past: list[Message]) -> list[Message]:
    """`past` without the fragments of messages whose first fragment is not in it."""
    begun: set[str] = set()
    out = []
    for m in past:
        try:
            f = envelope.decode(m.data)
        except envelope.BadEnvelope:
            out.append(m)  # not a stemflow.js message: the browser library drops it itself
            continue
        if f.index == 0:
            begun.add(f.message_id)
        if f.message_id in begun:
            out.append(m)
    return out


class RelayLink:
    """Shared connections to one relay. Create with `await RelayLink.open(address)`."""

    def __init__(self, address: str, subscriber: Client, publishers: dict[PublisherKey, Client]):
        self.address = address
        self.subscriber = subscriber
        self.publishers = publishers
        self.dc = subscriber.relay
        self._streams: dict[tuple[str, bool], Stream] = {}

    @classmethod
    async def open(cls, address: str, token: str | None = None,
                   tls: ssl.SSLContext | None = None) -> RelayLink:
        clients = await asyncio.gather(*(connect(address, token=token, tls=tls) for _ in range(5)))
        keys = [(True, True), (True, False), (False, True), (False, False)]
        return cls(address, clients[0], dict(zip(keys, clients[1:], strict=True)))

    async def close(self) -> None:
        for c in [self.subscriber, *self.publishers.values()]:
            await c.close()

    async def publish(self, topic: str, data: bytes, *, reliable: bool, delay_sensitive: bool) -> None:
        """Reliable: returns when the ingress relay accepted the message. Live: when the
        connection took it (waits only while the relay connection is congested)."""
        client = self.publishers[(reliable, delay_sensitive)]
        if reliable:
            await client.publish(topic, data, delay_sensitive=delay_sensitive)
            return
        stream = self._streams.get((topic, delay_sensitive))
        if stream is None:
            stream = self._streams[(topic, delay_sensitive)] = client.open_stream(
                topic, delay_sensitive=delay_sensitive, reliable=False)
        await stream.write(data)

    async def subscribe(self, topic: str) -> Subscription:
        return await self.subscriber.subscribe(topic)

    async def history(self, topic: str, count: int) -> list[Message]:
        """The topic's last `count` relay messages, as the relays keep them (`Client.subscribe`
        with `history`; raises `ClientError` saying why not, e.g. no `--history` rule names the
        topic). Fragments whose message began before the oldest kept one are left out: a browser
        could never complete them."""
        sub = await asyncio.wait_for(self.subscriber.subscribe(topic, history=count), HISTORY_TIMEOUT_S)
        sub.unsubscribe()
        return whole_messages(sub.history)

    async def watch(self, on_lost: Callable[[str], Awaitable[None]]) -> None:
        """Ping the relay until it fails; then call `on_lost(reason)` once."""
        clients = [self.subscriber, *self.publishers.values()]
        try:
            while True:
                await asyncio.wait_for(asyncio.gather(*(c.ping() for c in clients)), 5 * WATCH_INTERVAL_S)
                await asyncio.sleep(WATCH_INTERVAL_S)
        except (ClientError, TimeoutError, OSError) as e:
            await on_lost(f"lost relay {self.address}: {e}")
