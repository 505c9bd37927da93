"""TXT look-ups for sender trust: short timeouts, a bounded cache, and a clear line
between "there is no record" and "DNS did not answer".

DKIM keys and DMARC policies live in DNS. A look-up gives one of three things:

- ``found``: the TXT strings of the name;
- ``absent``: the name or its TXT records do not exist (NXDOMAIN, no answer): a fact
  about the sender's domain;
- ``failed``: no server answered in time, or each refused (timeout, SERVFAIL): no fact
  at all. A verdict that needed it is ``unknown``, never ``pass``.

Answers are cached by name for their TTL (bounded to ``MAX_TTL``), absences too, and a
failure for ``FAILURE_TTL`` seconds, so a resolver that is down costs one timeout per
name and minute rather than one per email. Each worker process has its own cache.
The seam for tests and for operators is dnspython's own: the nameservers the resolver
asks (``KAVE_SENDER_TRUST_DNS``), so tests point it at a DNS server they start.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

Status = Literal["found", "absent", "failed"]

MAX_TTL = 3600.0
MIN_TTL = 30.0
FAILURE_TTL = 60.0
CACHE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class TxtAnswer:
    status: Status
    # Each TXT record's strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2), bytes as sent.
    records: tuple[bytes, ...] = ()


def nameserver(text: str) -> dns.nameserver.Do53Nameserver:
    """``host`` or ``host:port`` (``[v6]:port`` for IPv6) as a plain-DNS nameserver."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest.lstrip(":") or 53)
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number)
    return dns.nameserver.Do53Nameserver(host, port)


class TxtLookup:
    """TXT records by name, through one dnspython resolver and a TTL cache."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 2.0) -> None:
        # configure=True reads /etc/resolv.conf; nameservers given replace its servers.
        self._resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = [nameserver(n) for n in nameservers]
        # timeout: per server try; lifetime: the whole look-up, retries included.
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._cache: OrderedDict[str, tuple[float, TxtAnswer]] = OrderedDict()
        self._lock = threading.Lock()
        self.queries = 0  # look-ups that went to DNS (for the bench and tests)

    def txt(self, name: str) -> TxtAnswer:
        key = name.lower().rstrip(".")
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                self._cache.move_to_end(key)
                return cached[1]
        answer, ttl = self._ask(key)
        with self._lock:
            self._cache[key] = (now + ttl, answer)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return answer

    def _ask(self, name: str) -> tuple[TxtAnswer, float]:
        self.queries += 1
        try:
            result = self._resolver.resolve(name + ".", dns.rdatatype.TXT, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return TxtAnswer("absent"), MIN_TTL * 10
        except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError):
            return TxtAnswer("failed"), FAILURE_TTL
        except dns.exception.DNSException:
            # A name that cannot be asked (too long, bad label): nothing can exist there.
            return TxtAnswer("absent"), MIN_TTL * 10
        records = tuple(b"".join(rdata.strings) for rdata in result)
        ttl = min(max(float(result.rrset.ttl if result.rrset else MIN_TTL), MIN_TTL), MAX_TTL)
        return TxtAnswer("found", records), ttl
