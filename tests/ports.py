"""Free TCP ports on the loopback for servers the tests start as real processes."""

from __future__ import annotations

import socket
from collections.abc import Sequence


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(offsets: Sequence[int]) -> int:
    """A base port b such that b + each offset is free now (for a launcher that numbers its ports
    from one base: replicas +10, metrics +1000)."""
    for _ in range(200):
        base = free_port()
        ports = [base + offset for offset in offsets]
        if max(ports) >= 65535:
            continue
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no free block of ports at offsets {list(offsets)}")
