"""Keeps a client process on loopback: the gateway's name resolves to 127.0.0.1 (as it would to
the endpoint's addresses in a VPC with private DNS), IP literals resolve as themselves, and
every other name is refused, so nothing in the OAuth flow can reach past 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket

_real_getaddrinfo = socket.getaddrinfo


class LoopbackGuard:
    def __init__(self, gateway_host: str) -> None:
        self.gateway_host = gateway_host
        self.gateway_lookups = 0
        self.refused: list[str] = []

    def install(self) -> None:
        socket.getaddrinfo = self._getaddrinfo  # type: ignore[assignment]

    def _getaddrinfo(self, host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if name == self.gateway_host:
            self.gateway_lookups += 1
            return _real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            self.refused.append(name)
            raise socket.gaierror(
                socket.EAI_NONAME, f"{name}: refused by the e2e loopback guard"
            ) from None
        return _real_getaddrinfo(host, port, *args, **kwargs)
