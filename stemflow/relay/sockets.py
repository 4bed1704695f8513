"""Socket options every relay connection gets: no Nagle delay, the chosen congestion control.

Owns the one place where a relay tunes its TCP sockets, so peer links and accepted connections
cannot drift apart. Congestion control is set per socket (TCP_CONGESTION), because inside a
network namespace the host-wide default cannot be changed.
"""

from __future__ import annotations

import socket

PEER_NOTSENT_LOWAT_BYTES = 128 << 10
"""Unsent bytes a peer connection may hold in the kernel (TCP_NOTSENT_LOWAT). Without a limit a
window-limited WAN connection buffers megabytes (tcp_wmem autotuning), so the P connections of
a peer drift seconds apart and the egress relay's reorder buffer sees gaps it must skip. With
it, a slow connection stops being writable and the stripes go to the others; delay-sensitive
frames wait behind at most this much. 128 KiB is the usual choice of latency-aware
multiplexers (HTTP/2 servers), and the value the simulator models (`notsent_lowat_bytes`)."""


FAST_NOTSENT_LOWAT_BYTES = 16 << 10
"""Unsent bytes the fast (delay-sensitive) connection of a peer link may hold in the kernel: a
few frames of a live stream (a 5 Mbit/s, 30 frames/s stream sends 21 KB frames), so a live
frame's wait in the kernel is the time to send the live frames before it, not a backlog."""


def tune_socket(sock: socket.socket, congestion_control: str | None,
                notsent_lowat_bytes: int | None = None) -> None:
    """TCP_NODELAY (frames are already batched), and if given the congestion control and the
    unsent-bytes limit."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if congestion_control:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion_control.encode())
    if notsent_lowat_bytes:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, notsent_lowat_bytes)


def check_congestion_control(name: str) -> None:
    """Fail at start-up, with the fix, if this kernel cannot give sockets `name`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
        except OSError as e:
            with open("/proc/sys/net/ipv4/tcp_allowed_congestion_control") as f:
                allowed = f.read().split()
            raise SystemExit(f"stemflow relay: congestion control {name!r} is not available to this "
                             f"process ({e.strerror}); allowed here: {' '.join(allowed)}. As root: "
                             f"modprobe tcp_{name}, or add it to "
                             "net.ipv4.tcp_allowed_congestion_control") from None


def keeps_view(transport, data) -> bool:
    """Whether `transport` may still hold `data` itself after `write(data)`: a memoryview the
    socket did not take whole. Python 3.12+'s asyncio and uvloop keep such a view without
    copying, so the buffer behind it must not be written again."""
    return type(data) is memoryview and transport.get_write_buffer_size() > 0
