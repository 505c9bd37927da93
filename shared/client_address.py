"""Who is asking: the client address a per-client rate limit counts against.

``X-Forwarded-For`` is believed only when the direct peer is one of
``KAVE_TRUSTED_PROXIES``, and then the client is the right-most address that is not a
trusted proxy: everything to the left of it was written by the client itself. IPv6
clients count per /64, the block one host can trivially rotate addresses within.
Used by the receiver (webhooks with bad signatures) and the API (the token endpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.requests import Request

Network = IPv4Network | IPv6Network


# The receiver asks on every webhook POST (its per-client cap), and parsing an address
# costs more than the rest of the lookup; a bounded cache keeps a rotating header cheap.
@lru_cache(maxsize=4096)
def _parse_hop(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:443"
        value = value.split(":", 1)[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


@lru_cache(maxsize=4096)
def _bucket_name(address: IPv4Address | IPv6Address) -> str:
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The address a client-keyed limit counts against (see the module docstring)."""
    peer_text = request.client.host if request.client else ""
    peer = _parse_hop(peer_text)
    if peer is None:
        return peer_text or "unknown"
    client = peer
    if _trusted(peer, trusted_proxies):
        hops = [
            hop
            for header in request.headers.getlist("x-forwarded-for")
            for hop in header.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            address = _parse_hop(hop)
            if address is None:
                break  # garbage: believe nothing further left; count the last proxy
            client = address
            if not _trusted(address, trusted_proxies):
                break
    return _bucket_name(client)
