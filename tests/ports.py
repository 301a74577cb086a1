"""Free loopback ports for the servers the tests start (mock APNs, nginx, PostgreSQL, ...)."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now; the caller binds it soon after (a small race, retried by
    the callers that can lose it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
