"""Relay sockets get the congestion control a scenario asks for, or the relay refuses to start."""

import socket

import pytest

from stemflow.relay.sockets import PEER_NOTSENT_LOWAT_BYTES, check_congestion_control, tune_socket


@pytest.mark.parametrize("cc", ["reno", "cubic"])
def test_tune_socket_sets_congestion_control_and_nodelay(cc):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        tune_socket(s, cc)
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0") == cc.encode()
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_peer_sockets_limit_their_unsent_bytes():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        tune_socket(s, None, PEER_NOTSENT_LOWAT_BYTES)
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == PEER_NOTSENT_LOWAT_BYTES


def test_unknown_congestion_control_is_refused_with_the_fix():
    with pytest.raises(SystemExit, match="'nosuchcc' is not available.*allowed here"):
        check_congestion_control("nosuchcc")


def test_relay_cli_refuses_an_unavailable_congestion_control():
    from stemflow.relay.__main__ import parse_args

    with pytest.raises(SystemExit, match="nosuchcc"):
        parse_args(["--dc", "a", "--listen", "127.0.0.1:0", "--controller", "127.0.0.1:1",
                    "--cc", "nosuchcc"])


def test_tcp_info_reads_the_kernels_minimum_rtt():
    from stemflow.relay.measure import tcp_info

    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname()) as c:
        a, _ = srv.accept()
        with a:
            c.sendall(b"x" * 100_000)
            got = 0
            while got < 100_000:
                got += len(a.recv(1 << 20))
            info = tcp_info(c)
    assert info is not None and info.bytes_acked >= 100_000
    assert info.min_rtt_us is not None and 0 < info.min_rtt_us <= info.rtt_us + info.rttvar_us
