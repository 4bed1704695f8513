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
import inspect
import ssl
from collections.abc import Awaitable, Callable

from stemflow.client import Client, ClientError, Message, Stream, Subscription, connect

WATCH_INTERVAL_S = 1.0
"""How often the relay is pinged; with TCP's own failure detection, a relay killed outright is
noticed at once (connection reset) and a silent one within about a second."""
HISTORY_TIMEOUT_S = 5.0
"""How long a history request may take before the browser is told it is unavailable."""

PublisherKey = tuple[bool, bool]
"""(reliable, delay_sensitive)."""


def client_has_history() -> bool:
    """Whether `stemflow.client` can ask its relay for a topic's past messages (see
    `RelayLink.history`); until it can, a browser asking for history gets a notice."""
    return "history" in inspect.signature(Client.subscribe).parameters


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
        """The topic's last `count` messages, as the relays keep them.

        Needs `stemflow.client.Client.subscribe(topic, history=N)`: a new subscription whose first
        messages are the topic's last N (wherever in the overlay they are kept), each marked
        with `Message.history` true, then live ones. Raises `ClientError` saying why not.
        """
        if not client_has_history():
            raise ClientError("this relay client keeps no topic history yet")
        sub = await self.subscriber.subscribe(topic, history=count)  # type: ignore[call-arg]
        past: list[Message] = []
        try:
            while len(past) < count:
                msg = await sub.get(HISTORY_TIMEOUT_S)
                if not getattr(msg, "history", False):
                    break
                past.append(msg)
        finally:
            sub.unsubscribe()
        return past

    async def watch(self, on_lost: Callable[[str], Awaitable[None]]) -> None:
        """Ping the relay until it fails; then call `on_lost(reason)` once."""
        clients = [self.subscriber, *self.publishers.values()]
        try:
            while True:
                await asyncio.wait_for(asyncio.gather(*(c.ping() for c in clients)), 5 * WATCH_INTERVAL_S)
                await asyncio.sleep(WATCH_INTERVAL_S)
        except (ClientError, TimeoutError, OSError) as e:
            await on_lost(f"lost relay {self.address}: {e}")
