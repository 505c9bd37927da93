"""The form decoder gives exactly what ``parse_qsl`` gives, whole or piece by piece."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode

import pytest

from shared.formdata import (
    FormDecodeError,
    decode_form,
    form_fields,
    is_empty_batch,
    iter_value_utf8,
)
from shared.mandrill_signature import body_signature_matches, compute_signature

# Pieces that exercise escapes (valid, invalid, split UTF-8), raw UTF-8, NUL and the
# separators.
_PIECES = [
    "a", "=", "&", "+", "%", "%2", "zz", "%00", "%25", "%26", "%3D", "%2B", "%C3", "%A9",
    "%c3%a9", "%E2", "%82", "%AC", "%FF", "%ed", "%a0", "%80", "%F0%9F%98%80", "é", "€",
    "\ufffd", "\x00", " ", "[", "]", "%5B", "%5D", "%20", "\n",
]  # fmt: skip


def _reference(text: str) -> list[tuple[str, str]] | None:
    try:
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return None


def _whole(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return decode_form(body)
    except FormDecodeError:
        return None


def _pieces(body: bytes, chunk: int) -> list[tuple[str, str]] | None:
    try:
        return [
            (field.name, b"".join(iter_value_utf8(body, field, chunk)).decode("utf-8"))
            for field in form_fields(body)
        ]
    except FormDecodeError:
        return None


def test_same_pairs_and_errors_as_parse_qsl() -> None:
    rng = random.Random(6)
    for _ in range(5000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 24)))
        body = text.encode("utf-8")
        expected = _reference(text)
        assert _whole(body) == expected, text
        assert _pieces(body, rng.choice([1, 2, 3, 7, 1000])) == expected, text


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(FormDecodeError):
        decode_form(b"mandrill_events=\xff")
    with pytest.raises(FormDecodeError):
        form_fields(b"mandrill_events=\xff")


@pytest.mark.parametrize(
    ("value", "empty"),
    [("[]", True), (" [] ", True), ("\n[]\t", True), ("[ ]", False), ("[]x", False), ("", False)],
)
def test_empty_batch(value: str, empty: bool) -> None:
    body = urlencode([("mandrill_events", value)]).encode("ascii")
    (field,) = form_fields(body)
    assert is_empty_batch(body, field) is empty
    assert (value.strip() == "[]") is empty


def test_streamed_signature_matches_the_reference_in_small_pieces() -> None:
    events = '[{"event":"inbound","msg":{"raw_msg":"caf\\u00e9 \\/ 100% + & = é€"}}]' * 50
    fields = [("mandrill_events", events), ("other", "x&y=z")]
    body = urlencode(fields).encode("ascii")
    url = "https://mail.kave.test/api/v1/webhooks/mailchimp"
    signature = compute_signature("key", url, fields)
    located = form_fields(body)
    for chunk in (1, 5, 64, 1 << 20):
        matched = body_signature_matches(
            signature, ["nope", "key"], [url], body, located, chunk_bytes=chunk
        )
        assert matched == url
    assert body_signature_matches(signature, ["nope"], [url], body, located) is None
