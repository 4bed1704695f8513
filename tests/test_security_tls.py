"""Overlay membership over mutual TLS: the controller registers only relays whose certificate
(from the overlay's CA) names them; a relay accepts a peer only with such a certificate; a
client speaks TLS to a relay with a certificate, and a plaintext client to that port gets
nowhere."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from stemflow.client import ClientError, connect
from stemflow.controller import Controller
from stemflow.controller_server import ControllerServer, RelayConnection
from stemflow.network import NetworkState
from stemflow.protocol import FrameDecoder, FrameType, encode_json
from stemflow.relay.server import Relay
from stemflow.security import certs
from stemflow.security.tls import MemberTls, client_context

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, Path]:
    """The overlay's CA with relays a, b and the controller; another CA that also has an 'a'."""
    ours, theirs = tmp_path_factory.mktemp("ca"), tmp_path_factory.mktemp("other-ca")
    certs.init_ca(ours)
    for name in ("a", "b"):
        certs.issue(ours, name)
    certs.issue(ours, certs.CONTROLLER_NAME, "controller")
    certs.init_ca(theirs)
    certs.issue(theirs, "a")
    return ours, theirs


async def _controller(ca: Path) -> tuple[ControllerServer, asyncio.Server, str]:
    server = ControllerServer(Controller(NetworkState(datacenters=(), links={}, clients={}, parallel=4)),
                              grace_s=0.0, members_only=True)
    tls = MemberTls(ca, certs.CONTROLLER_NAME, require_client_cert=True)
    srv = await asyncio.get_running_loop().create_server(lambda: RelayConnection(server),
                                                         "127.0.0.1", 0, ssl=tls.server)
    host, port = srv.sockets[0].getsockname()[:2]
    return server, srv, f"{host}:{port}"


async def _until(pred, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


def test_only_a_relay_with_a_certificate_naming_it_registers(pki) -> None:
    ours, theirs = pki

    async def run() -> None:
        server, srv, addr = await _controller(ours)
        good = Relay("a", "127.0.0.1:0", addr, tls=MemberTls(ours, "a", False))
        foreign = Relay("b", "127.0.0.1:0", addr, tls=MemberTls(theirs, "a", False))
        plain = Relay("c", "127.0.0.1:0", addr)
        for r in (good, foreign, plain):
            await r.start()
        try:
            assert await _until(lambda: "a" in server.conns)
            await asyncio.sleep(0.5)  # several retries of the others
            assert set(server.conns) == {"a"}  # another CA's and a plaintext relay: nothing
        finally:
            for r in (good, foreign, plain):
                await r.stop()
            srv.close()

    asyncio.run(run())


def test_a_certificate_for_one_relay_cannot_register_as_another(pki) -> None:
    ours, _ = pki

    async def run() -> None:
        server, srv, addr = await _controller(ours)
        host, port = addr.rsplit(":", 1)
        try:
            reader, writer = await asyncio.open_connection(
                host, int(port), ssl=MemberTls(ours, "b", False).client,
                server_hostname=certs.CONTROLLER_NAME)
            writer.write(encode_json(FrameType.REGISTER, {"dc": "a", "address": "127.0.0.1:1"}))
            frames = FrameDecoder().receive_data(await asyncio.wait_for(reader.read(), 5))
            assert frames[-1].type is FrameType.ERROR
            assert frames[-1].text() == "relay 'a': the certificate presented names relay 'b'"
            assert server.conns == {}
        finally:
            srv.close()

    asyncio.run(run())


def _error(data: bytes) -> str:
    frames = FrameDecoder().receive_data(data)
    assert frames and frames[-1].type is FrameType.ERROR, frames
    return frames[-1].text()


def test_a_relay_accepts_a_peer_only_with_its_certificate_and_clients_over_tls(pki) -> None:
    ours, _ = pki

    async def run() -> None:
        relay = Relay("a", "127.0.0.1:0", "127.0.0.1:9", tls=MemberTls(ours, "a", False))
        host, port = (await relay.start()).rsplit(":", 1)
        try:
            # a TLS connection without a certificate claiming to be peer relay b
            r, w = await asyncio.open_connection(host, int(port), ssl=client_context(ours / "ca.pem"),
                                                 server_hostname="a")
            w.write(encode_json(FrameType.HELLO, {"role": "peer", "dc": "b"}))
            assert "no certificate" in _error(await asyncio.wait_for(r.read(), 5))
            # relay b's certificate, claiming to be c
            r, w = await asyncio.open_connection(host, int(port), ssl=MemberTls(ours, "b", False).client,
                                                 server_hostname="a")
            w.write(encode_json(FrameType.HELLO, {"role": "peer", "dc": "c"}))
            assert "names relay 'b'" in _error(await asyncio.wait_for(r.read(), 5))
            assert relay.counters["refused_membership"] == 2
            # a client over TLS (it authenticates with tokens where the relay checks them)
            c = await connect(f"{host}:{port}", timeout_s=5, tls=client_context(ours / "ca.pem"))
            sub = await c.subscribe("t")
            await c.open_stream("t").write(b"over tls")
            assert (await sub.get(5)).data == b"over tls"
            await c.close()
            # a plaintext client to the TLS port gets no HELLO answer, only a closed connection
            with pytest.raises((ClientError, TimeoutError, ConnectionError)):
                await connect(f"{host}:{port}", timeout_s=2)
            # and a client that does not trust this CA refuses the relay
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"{host}:{port}", timeout_s=2, tls=ssl.create_default_context())
        finally:
            await relay.stop()

    asyncio.run(run())


def test_two_relays_carry_a_stream_over_mutual_tls_end_to_end(pki) -> None:
    ours, _ = pki

    async def run() -> None:
        server, srv, addr = await _controller(ours)
        ticker = asyncio.create_task(_tick(server))
        relays = {dc: Relay(dc, "127.0.0.1:0", addr, interval_s=0.2, tls=MemberTls(ours, dc, False))
                  for dc in ("a", "b")}
        where = {dc: await r.start() for dc, r in relays.items()}
        tls = client_context(ours / "ca.pem")
        try:
            assert await _until(lambda: set(server.conns) == {"a", "b"})
            sub_client = await connect(where["b"], timeout_s=5, tls=tls)
            pub_client = await connect(where["a"], timeout_s=5, tls=tls)
            sub = await sub_client.subscribe("news")
            assert await _until(lambda: all(p.connected for r in relays.values()
                                            for p in r.peers.values()) and relays["a"].peers, 10)
            assert await pub_client.publish("news", b"across the overlay")  # ACKed: routed to b
            assert (await sub.get(10)).data == b"across the overlay"
            assert all(r.counters["refused_membership"] == 0 for r in relays.values())
            await sub_client.close()
            await pub_client.close()
        finally:
            ticker.cancel()
            for r in relays.values():
                await r.stop()
            srv.close()

    asyncio.run(run())


async def _tick(server: ControllerServer) -> None:
    while True:
        await asyncio.sleep(0.05)
        server.tick()


def test_a_recorded_registration_replayed_registers_nobody(pki) -> None:
    """The bytes a relay sent the controller, recorded on the wire and sent again on a new
    connection, are a stale TLS handshake: the controller registers no one."""
    ours, _ = pki

    async def run() -> None:
        server, srv, addr = await _controller(ours)
        chost, cport = addr.rsplit(":", 1)
        recorded = bytearray()

        async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_r, up_w = await asyncio.open_connection(chost, int(cport))

            async def pump(src, dst, record: bool) -> None:
                while data := await src.read(65536):
                    if record:
                        recorded.extend(data)
                    dst.write(data)
                dst.close()
            await asyncio.gather(pump(reader, up_w, True), pump(up_r, writer, False),
                                 return_exceptions=True)

        tap = await asyncio.start_server(proxy, "127.0.0.1", 0)
        tap_addr = f"127.0.0.1:{tap.sockets[0].getsockname()[1]}"
        relay = Relay("a", "127.0.0.1:0", tap_addr, tls=MemberTls(ours, "a", False))
        await relay.start()
        try:
            assert await _until(lambda: "a" in server.conns)
            await relay.stop()
            assert await _until(lambda: "a" not in server.conns)
            r, w = await asyncio.open_connection(chost, int(cport))
            w.write(bytes(recorded))
            await asyncio.wait_for(r.read(), 5)  # the controller ends the connection
            await asyncio.sleep(0.2)
            assert server.conns == {} and recorded
        finally:
            tap.close()
            srv.close()

    asyncio.run(run())


def test_no_relay_certificate_may_carry_the_controllers_name(pki, tmp_path) -> None:
    ours, _ = pki
    with pytest.raises(ValueError, match="the controller's"):
        certs.issue(ours, certs.CONTROLLER_NAME, "relay")
    with pytest.raises(ValueError, match="no CA there"):
        certs.issue(tmp_path, "a")
    with pytest.raises(FileExistsError):
        certs.init_ca(ours)


def test_a_tls_handshake_that_never_comes_is_dropped_within_the_hello_timeout(pki) -> None:
    from stemflow.security.limits import ConnectionLimits

    ours, _ = pki

    async def run() -> None:
        relay = Relay("a", "127.0.0.1:0", "127.0.0.1:9", tls=MemberTls(ours, "a", False),
                      limits=ConnectionLimits(hello_timeout_s=0.3))
        host, port = (await relay.start()).rsplit(":", 1)
        try:
            r, _ = await asyncio.open_connection(host, int(port))  # TCP only, no ClientHello
            t0 = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(r.read(), 5) == b""
            assert asyncio.get_running_loop().time() - t0 < 3
        finally:
            await relay.stop()

    asyncio.run(run())
