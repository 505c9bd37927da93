"""The form decoder gives exactly what ``parse_qsl`` gives, whole or piece by piece."""

from __future__ import annotations

import random
import tracemalloc
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

import pytest

from shared.formdata import (
    FormDecodeError,
    FormLimitError,
    decode_form,
    events_field,
    field_value_utf8,
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


def test_one_field_is_decoded_as_the_whole_form_decodes_it() -> None:
    rng = random.Random(13)
    names = ["mandrill_events", "mandrill_events", "a", ""]
    for _ in range(3000):
        body = "&".join(
            rng.choice(names)
            + "="
            + "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 12)))
            for _ in range(rng.randint(0, 4))
        ).encode("utf-8")
        try:
            expected: str | None = events_field(decode_form(body))
        except FormDecodeError:
            with pytest.raises(FormDecodeError):
                field_value_utf8(body, "mandrill_events", chunk_bytes=4)
            continue
        got = field_value_utf8(body, "mandrill_events", chunk_bytes=4)
        assert (None if got is None else got.decode("utf-8")) == expected, body


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(FormDecodeError):
        decode_form(b"mandrill_events=\xff")
    with pytest.raises(FormDecodeError):
        form_fields(b"mandrill_events=\xff")


@pytest.mark.parametrize(
    ("value", "empty"),
    [
        ("[]", True),
        (" [] ", True),
        ("\n[]\t", True),
        ("  \u3000[]\u3000  ", True),
        ("[ ]", False),
        ("[] ]", False),
        ("[]x", False),
        ("[[]]", False),
        ("[", False),
        ("", False),
        (" ", False),
    ],
)
def test_empty_batch(value: str, empty: bool) -> None:
    body = urlencode([("mandrill_events", value)]).encode("ascii")
    (field,) = form_fields(body)
    assert is_empty_batch(body, field) is empty
    for chunk in (1, 2, 3):
        assert is_empty_batch(body, field, chunk) is empty
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


def test_limits_refuse_or_change_nothing() -> None:
    rng = random.Random(9)
    for _ in range(3000):
        body = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 24))).encode("utf-8")
        max_fields, max_name = rng.randint(1, 6), rng.randint(0, 8)
        try:
            unlimited = form_fields(body)
        except FormDecodeError as exc:
            unlimited = type(exc)  # type: ignore[assignment]
        try:
            limited = form_fields(body, max_fields=max_fields, max_name_bytes=max_name)
        except FormLimitError:
            pieces = body.split(b"&")
            names = [piece.split(b"=", 1)[0] for piece in pieces]
            assert len(pieces) > max_fields or max(len(name) for name in names) > max_name
            continue
        except FormDecodeError as exc:
            limited = type(exc)  # type: ignore[assignment]
        assert limited == unlimited, body


@pytest.mark.parametrize(
    "body",
    [
        b"&a" * 4_000_000,  # 8 MB of one-byte fields
        b"&" * 8_000_000,  # 8 MB of empty pieces
        b"a=1&" * 100_000,
        b"%" * 8_000_000,  # one 8 MB name
        b"mandrill_events=%5B%5D&" + b"x" * 8_000_000 + b"=1",
    ],
)
def test_a_hostile_form_is_refused_before_anything_is_built_per_field(body: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(FormLimitError):
            form_fields(body, max_fields=8, max_name_bytes=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # a few objects, not one per field nor a copy of the body


def test_within_the_limits_mandrill_bodies_are_located_as_before() -> None:
    body = urlencode([("mandrill_events", '[{"event":"open"}]')]).encode("ascii")
    assert form_fields(body, max_fields=1, max_name_bytes=15) == form_fields(body)
    with pytest.raises(FormLimitError):
        form_fields(body + b"&", max_fields=1)  # empty pieces count: the scan stops early


def test_a_deep_batch_is_not_decoded_whole_to_see_that_it_is_not_empty() -> None:
    body = b"mandrill_events=" + b"[" * 4_000_000 + b"]" * 4_000_000
    (field,) = form_fields(body, max_fields=8, max_name_bytes=256)
    tracemalloc.start()
    try:
        assert is_empty_batch(body, field) is False
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # a piece or two, not the 8 MB value


# Pieces that make long runs with few places to cut: continuation bytes, escapes of lead
# bytes, lone '%', raw multi-byte characters.
_HARD = ["%80", "%BF", "%bf", "%C3", "%A9", "%E2%82%AC", "%", "%%", "%8", "%b", "é", "€", "a"]


def test_pieces_cut_only_between_characters_even_in_long_runs() -> None:
    rng = random.Random(14)
    for _ in range(1500):
        weights = [rng.random() for _ in _HARD]
        text = "x=" + "".join(rng.choices(_HARD, weights, k=rng.randint(0, 200)))
        body = text.encode("utf-8")
        expected = _reference(text)
        for chunk in (1, 2, 3, 5, 16):
            assert _pieces(body, chunk) == expected, (text, chunk)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (b"%80" * 1_000_000, False),  # no character starts anywhere
        (b"%" * 3_000_000, True),  # '%' escaping nothing is itself
        (b"%C3%A9" * 500_000, True),  # escaped two-byte characters
        (b"%E4%B8%AD" * 333_334, True),
    ],
)
def test_a_value_without_ascii_is_decoded_in_bounded_pieces(value: bytes, valid: bool) -> None:
    body = b"mandrill_events=" + value
    (field,) = form_fields(body)
    expected = len(unquote_to_bytes(value))
    tracemalloc.start()
    try:
        if valid:
            assert sum(len(piece) for piece in iter_value_utf8(body, field)) == expected
        else:
            with pytest.raises(FormDecodeError):
                for _ in iter_value_utf8(body, field):
                    pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # pieces of ~512 KB, never the 3 MB value at once
