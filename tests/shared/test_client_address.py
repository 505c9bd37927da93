"""Who the client is, for the per-client rate limits of both apps."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from shared.client_address import client_address
from shared.settings import Settings


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", "203.0.113.1", "198.51.100.7"),  # untrusted peer: header ignored
        ("10.0.0.2", "203.0.113.1", "203.0.113.1"),
        ("10.0.0.2", "6.6.6.6, 203.0.113.1", "203.0.113.1"),  # left part is the client's
        ("10.0.0.2", "203.0.113.1, 10.0.0.3", "203.0.113.1"),  # two proxies
        ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4"),  # all proxies: the farthest
        ("10.0.0.2", "not-an-ip", "10.0.0.2"),  # garbage: the proxy itself
        ("10.0.0.2", "203.0.113.1:4711", "203.0.113.1"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::/64"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("2001:db8:1:2:3::9", None, "2001:db8:1:2::/64"),  # IPv6 counts per /64
        ("::ffff:198.51.100.7", None, "198.51.100.7"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    settings = Settings(_env_file=None, trusted_proxies="10.0.0.0/8")  # type: ignore[call-arg]
    assert client_address(_request(peer, forwarded), settings.trusted_proxies) == expected
