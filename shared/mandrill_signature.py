"""Mandrill's webhook signature, computed (pure; used to verify and to sign test batches).

``X-Mandrill-Signature = base64(HMAC-SHA1(key, url + concat(k + v for k in sorted(fields))))``
over UTF-8, where ``url`` is the webhook URL exactly as registered in Mandrill and each
``v`` is the form-decoded value byte for byte. Never re-serialise parsed JSON before
signing or verifying: Mandrill escapes ``/`` as ``\\/`` and the bytes must match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def signed_message(url: str, fields: Iterable[tuple[str, str]]) -> bytes:
    parts = [url]
    for key, value in sorted(fields, key=lambda item: item[0]):
        parts.append(key)
        parts.append(value)
    return "".join(parts).encode("utf-8")


def compute_signature(key: str, url: str, fields: Iterable[tuple[str, str]]) -> str:
    digest = hmac.new(key.encode("utf-8"), signed_message(url, fields), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(
    signature: str, keys: Iterable[str], urls: Iterable[str], fields: list[tuple[str, str]]
) -> str | None:
    """The registered URL that the signature verifies against, or None.

    Every (key, url) pair is tried and compared in constant time, so the time taken does
    not tell an attacker how close a guess was.
    """
    presented = signature.encode("ascii", "replace")
    matched: str | None = None
    for url in urls:
        message = signed_message(url, fields)
        for key in keys:
            expected = base64.b64encode(
                hmac.new(key.encode("utf-8"), message, hashlib.sha1).digest()
            )
            if hmac.compare_digest(expected, presented) and matched is None:
                matched = url
    return matched
