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
from urllib.parse import urlencode

from shared.formdata import CHUNK_BYTES, EVENTS_FIELD, FormField, iter_value_utf8


def signed_message(url: str, fields: Iterable[tuple[str, str]]) -> bytes:
    parts = [url]
    for key, value in sorted(fields, key=lambda item: item[0]):
        parts.append(key)
        parts.append(value)
    return "".join(parts).encode("utf-8")


def compute_signature(key: str, url: str, fields: Iterable[tuple[str, str]]) -> str:
    digest = hmac.new(key.encode("utf-8"), signed_message(url, fields), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_form(key: str, url: str, events: str) -> tuple[bytes, dict[str, str]]:
    """A webhook POST as Mandrill makes it: the form body and its headers, signed for ``url``.

    ``events`` is the ``mandrill_events`` value, sent byte for byte. The one way ``kave
    send``, the tests and the benchmarks build a batch.
    """
    fields = [(EVENTS_FIELD, events)]
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Mandrill-Webhook/1.0",
        "X-Mandrill-Signature": compute_signature(key, url, fields),
    }
    return urlencode(fields).encode("ascii"), headers


def body_signature_matches(
    signature: str,
    keys: Iterable[str],
    urls: Iterable[str],
    body: bytes,
    fields: list[FormField],
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> str | None:
    """The registered URL that the signature verifies against, or None, for a form body
    located by ``form_fields(body)``.

    Every (url, key) pair is tried and compared in constant time, so the time taken does
    not tell an attacker how close a guess was. The message of :func:`signed_message` is
    fed to every HMAC piece by piece as the values are decoded, so no decoded copy of the
    body is ever held in full. Raises
    :class:`shared.formdata.FormDecodeError` for a value that is not UTF-8.
    """
    presented = signature.encode("ascii", "replace")
    macs = [
        (url, hmac.new(key.encode("utf-8"), url.encode("utf-8"), hashlib.sha1))
        for url in urls
        for key in keys
    ]
    for field in sorted(fields, key=lambda item: item.name):
        name = field.name.encode("utf-8")
        for _, mac in macs:
            mac.update(name)
        for piece in iter_value_utf8(body, field, chunk_bytes):
            for _, mac in macs:
                mac.update(piece)
    matched: str | None = None
    for url, mac in macs:
        expected = base64.b64encode(mac.digest())
        if hmac.compare_digest(expected, presented) and matched is None:
            matched = url
    return matched
