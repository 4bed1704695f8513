"""Limits on a relay's connections: the hello timeout and the connection cap, both counted, both
said to the peer in an ERROR frame; a connection that says HELLO in time is kept."""

from __future__ import annotations

import asyncio

from stemflow.protocol import FrameDecoder, FrameType, encode_json
from stemflow.relay.server import Relay
from stemflow.security.limits import ConnectionLimits

UNREACHABLE_CONTROLLER = "127.0.0.1:9"
"""The discard port: nothing listens, so the relay keeps retrying its controller meanwhile."""


async def _relay(limits: ConnectionLimits) -> tuple[Relay, str]:
    relay = Relay("a", "127.0.0.1:0", UNREACHABLE_CONTROLLER, limits=limits)
    return relay, await relay.start()


async def _error_of(reader: asyncio.StreamReader, timeout_s: float = 2.0) -> str:
    """The reason of the ERROR frame the relay sends before it closes (then EOF)."""
    data = await asyncio.wait_for(reader.read(), timeout_s)
    frames = FrameDecoder().receive_data(data)
    assert frames and frames[-1].type is FrameType.ERROR, frames
    return frames[-1].text()


def test_a_connection_that_never_says_hello_is_closed_and_counted() -> None:
    async def run() -> None:
        relay, addr = await _relay(ConnectionLimits(hello_timeout_s=0.2))
        host, port = addr.rsplit(":", 1)
        try:
            silent_r, _ = await asyncio.open_connection(host, int(port))
            hello_r, hello_w = await asyncio.open_connection(host, int(port))
            hello_w.write(encode_json(FrameType.HELLO, {"role": "client"}))
            assert "no HELLO within 0.2 s" in await _error_of(silent_r)
            assert relay.counters["hello_timeouts"] == 1
            answer = FrameDecoder().receive_data(await asyncio.wait_for(hello_r.read(1024), 1))
            assert answer[0].type is FrameType.HELLO
            await asyncio.sleep(0.3)
            assert len(relay.connections) == 1  # the one that spoke in time stays
            hello_w.close()
        finally:
            await relay.stop()

    asyncio.run(run())


def test_connections_over_the_cap_are_refused_with_a_reason_and_counted() -> None:
    async def run() -> None:
        relay, addr = await _relay(ConnectionLimits(max_connections=3))
        host, port = addr.rsplit(":", 1)
        try:
            kept = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
            await asyncio.sleep(0.05)
            refused_r, _ = await asyncio.open_connection(host, int(port))
            assert "connection limit (3)" in await _error_of(refused_r)
            assert relay.counters["refused_connection_cap"] == 1
            assert len(relay.connections) == 3
            kept[0][1].close()
            await asyncio.sleep(0.1)
            r, w = await asyncio.open_connection(host, int(port))  # room again
            w.write(encode_json(FrameType.HELLO, {"role": "client"}))
            assert FrameDecoder().receive_data(await asyncio.wait_for(r.read(1024), 1))[0].type \
                is FrameType.HELLO
            for _, writer in [*kept[1:], (r, w)]:
                writer.close()
        finally:
            await relay.stop()

    asyncio.run(run())


def test_the_controller_closes_a_connection_that_never_registers(monkeypatch) -> None:
    from stemflow import controller_server
    from stemflow.controller import Controller
    from stemflow.network import NetworkState

    monkeypatch.setattr(controller_server, "HELLO_TIMEOUT_S", 0.2)

    async def run() -> None:
        server = controller_server.ControllerServer(
            Controller(NetworkState(datacenters=(), links={}, clients={}, parallel=4)))
        srv = await asyncio.get_running_loop().create_server(
            lambda: controller_server.RelayConnection(server), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.05)
                server.tick()
        ticker = asyncio.create_task(tick())
        try:
            silent_r, _ = await asyncio.open_connection("127.0.0.1", port)
            assert "no REGISTER within 0.2 s" in await _error_of(silent_r)
            assert server.unregistered == {}
        finally:
            ticker.cancel()
            srv.close()

    asyncio.run(run())
