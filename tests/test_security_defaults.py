"""Safe defaults: loopback runs open as before; beyond loopback a relay, controller or gateway
refuses to start without credentials unless told --insecure; the controller's status endpoint
answers only with its token when it has one."""

from __future__ import annotations

import asyncio

import pytest

from stemflow.controller import Controller
from stemflow.controller_server import ControllerServer, _serve_status
from stemflow.controller_server import parse_args as controller_args
from stemflow.gateway.__main__ import parse_args as gateway_args
from stemflow.network import NetworkState
from stemflow.relay.__main__ import parse_args as relay_args
from stemflow.security.exposure import bearer_matches, is_loopback


@pytest.mark.parametrize(("listen", "loopback"), [
    ("127.0.0.1:0", True), ("127.1.2.3:7000", True), ("localhost:1", True), ("[::1]:5", True),
    (":7000", True), ("0.0.0.0:7000", False), ("10.0.0.1:7000", False), ("relay.example:1", False)])
def test_what_counts_as_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def _refused(parse, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


RELAY = ["--dc", "a", "--controller", "127.0.0.1:1"]


def test_beyond_loopback_each_process_needs_credentials_or_insecure(capsys) -> None:
    assert "--certs and --auth-key are not given" in _refused(relay_args, [*RELAY, "--listen", "0.0.0.0:0"],
                                                              capsys)
    assert relay_args([*RELAY, "--listen", "0.0.0.0:0", "--insecure"]).insecure
    assert relay_args([*RELAY, "--listen", "127.0.0.1:0"]).tls is None  # loopback: as before
    assert "--certs is not given" in _refused(controller_args, ["--listen", "10.0.0.1:0"], capsys)
    err = _refused(controller_args, ["--listen", "127.0.0.1:0", "--status", "0.0.0.0:0"], capsys)
    assert "--status-token is not given" in err
    assert controller_args(["--listen", "127.0.0.1:0", "--status", "0.0.0.0:0", "--status-token", "s"])
    assert "--auth-key is not given" in _refused(gateway_args, ["--relay", "127.0.0.1:1", "--listen",
                                                                "0.0.0.0:0"], capsys)


def test_the_status_endpoint_answers_only_with_its_token() -> None:
    async def run() -> None:
        server = ControllerServer(Controller(NetworkState(datacenters=(), links={}, clients={},
                                                          parallel=4)))
        srv = await asyncio.start_server(lambda r, w: _serve_status(server, r, w, "s3cret"), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]

        async def get(headers: str) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(f"GET /status HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            data = await asyncio.wait_for(r.read(), 5)
            w.close()
            return data

        try:
            assert (await get("")).startswith(b"HTTP/1.1 401")
            assert (await get("Authorization: Bearer wrong\r\n")).startswith(b"HTTP/1.1 401")
            ok = await get("Authorization: Bearer s3cret\r\n")
            assert ok.startswith(b"HTTP/1.1 200") and b'"relays"' in ok
        finally:
            srv.close()

    asyncio.run(run())
    assert not bearer_matches(b"GET / HTTP/1.1\r\nAuthorization: Basic s3cret\r\n\r\n", "s3cret")
