"""The one rule for starting uvicorn, applied wherever a command is written.

Kave decides the client address in one place (KAVE_TRUSTED_PROXIES,
shared/client_address.py): uvicorn must not rewrite it from X-Forwarded-For first. The
container policy applies this to every compose service's command and to each
Dockerfile's CMD, the deploy policy to every Kubernetes container's command and args.

Standard library only; imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

PROXY_HEADERS_FINDING = (
    "run uvicorn with --no-proxy-headers: the client address is decided by Kave "
    "(KAVE_TRUSTED_PROXIES), not rewritten from X-Forwarded-For by uvicorn"
)
_TRUSTING = ("--proxy-headers", "--forwarded-allow-ips")


def trusts_proxy_headers(argv: Iterable[object]) -> bool:
    """Whether this command runs uvicorn without ``--no-proxy-headers``, or with an option
    that makes it trust X-Forwarded-For (``--proxy-headers``, ``--forwarded-allow-ips``).
    A command that does not run uvicorn never does."""
    args = [str(arg) for arg in argv]
    if not any("uvicorn" in arg for arg in args):
        return False
    return "--no-proxy-headers" not in args or any(arg.startswith(_TRUSTING) for arg in args)
