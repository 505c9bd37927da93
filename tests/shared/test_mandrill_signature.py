"""Every signature vector in the shared fixtures verifies; every NEGATIVE one does not."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from shared.formdata import decode_form, form_fields
from shared.mandrill_signature import body_signature_matches, compute_signature, signed_message
from tests.services import FIXTURES

VECTORS: list[dict[str, Any]] = json.loads((FIXTURES / "signature_vectors.json").read_text())[
    "vectors"
]
POSITIVE = [v for v in VECTORS if "NEGATIVE" not in v["id"]]
NEGATIVE = [v for v in VECTORS if "NEGATIVE" in v["id"]]


def _fields(vector: dict[str, Any]) -> list[tuple[str, str]]:
    if "params_file" in vector:
        return [
            (name, (FIXTURES / filename).read_text(encoding="utf-8"))
            for name, filename in vector["params_file"].items()
        ]
    return list(vector["params"].items())


def signature_matches(
    signature: str, keys: list[str], urls: list[str], fields: list[tuple[str, str]]
) -> str | None:
    """The receiver's check (:func:`body_signature_matches`) on these fields, form-encoded."""
    body = urlencode(fields).encode("ascii")
    return body_signature_matches(signature, keys, urls, body, form_fields(body))


def test_fixture_has_both_kinds() -> None:
    assert len(POSITIVE) >= 8
    assert len(NEGATIVE) >= 2


@pytest.mark.parametrize("vector", POSITIVE, ids=lambda v: v["id"])
def test_positive_vector_verifies(vector: dict[str, Any]) -> None:
    fields = _fields(vector)
    assert compute_signature(vector["key"], vector["url"], fields) == vector["expected_signature"]
    matched = signature_matches(
        vector["expected_signature"], ["some-other-key", vector["key"]], [vector["url"]], fields
    )
    assert matched == vector["url"]


@pytest.mark.parametrize("vector", NEGATIVE, ids=lambda v: v["id"])
def test_negative_vector_does_not_verify_original_signature(vector: dict[str, Any]) -> None:
    fields = _fields(vector)
    assert compute_signature(vector["key"], vector["url"], fields) == vector["expected_signature"]
    assert (
        signature_matches(vector["must_not_equal"], [vector["key"]], [vector["url"]], fields)
        is None
    )


@pytest.mark.parametrize("vector", [v for v in VECTORS if "raw_body" in v], ids=lambda v: v["id"])
def test_captured_raw_body_decodes_to_the_signed_values(vector: dict[str, Any]) -> None:
    fields = decode_form(vector["raw_body"].encode("ascii"))
    assert fields == list(vector["params"].items())
    assert compute_signature(vector["key"], vector["url"], fields) == vector["expected_signature"]


def test_signed_string_sorts_fields_by_name() -> None:
    vector = next(v for v in VECTORS if "signed_string" in v)
    assert signed_message(vector["url"], _fields(vector)) == vector["signed_string"].encode()


def test_reserialised_json_does_not_verify() -> None:
    """Mandrill escapes '/' as '\\/': re-serialising parsed JSON breaks the signature."""
    vector = POSITIVE[0]
    ((name, value),) = _fields(vector)
    assert "\\/" in value
    reserialised = json.dumps(json.loads(value), separators=(",", ":"))
    matched = signature_matches(
        vector["expected_signature"], [vector["key"]], [vector["url"]], [(name, reserialised)]
    )
    assert matched is None


def test_wrong_key_or_url_does_not_verify() -> None:
    vector = POSITIVE[0]
    fields = _fields(vector)
    signature = vector["expected_signature"]
    assert signature_matches(signature, ["wrong"], [vector["url"]], fields) is None
    assert signature_matches(signature, [vector["key"]], [vector["url"] + "/"], fields) is None
    assert (
        signature_matches("not base64 at all é", [vector["key"]], [vector["url"]], fields) is None
    )
