"""What the OpenAPI document says beyond the models: an example per model and per
error answer, so every answer in /api/v1/docs shows what it looks like."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from shared.web.errors import ErrorBody

EXAMPLE_TIME = "2026-11-26T09:14:03.120000Z"


def example(value: dict[str, Any]) -> ConfigDict:
    """A response model's config: read from ORM rows, documented with ``value``."""
    return ConfigDict(from_attributes=True, json_schema_extra={"examples": [value]})


_ERROR_EXAMPLES: dict[int, tuple[str, str]] = {
    401: (
        "No bearer token, or one that is invalid, expired or of a disabled user.",
        "invalid token (Signature has expired); get a new one from POST /api/v1/auth/token",
    ),
    403: (
        "The user may not do this (only admin users may erase data).",
        "erasing data needs an admin user (kave users create --admin NAME)",
    ),
    404: ("No such resource.", "no email 42"),
    409: (
        "The resource is not in a state that allows this.",
        "dead letter 7 is discarded, not open; only open dead letters can be replayed",
    ),
    422: (
        "A parameter is invalid; `errors` names each field.",
        "invalid request: check query.limit",
    ),
    429: (
        "Rate limit reached; wait the seconds in `Retry-After`.",
        "too many API requests for this user (limit 600 per 60 s); retry in 12 s",
    ),
    503: (
        "A dependency (database, Redis, object store) is unreachable; retry later.",
        "the object store is unreachable; try again shortly",
    ),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route, with an example each."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, message = _ERROR_EXAMPLES[code]
        errors = [{"field": "query.limit", "message": "Input should be less than or equal to 100"}]
        example = {"status": "error", "message": message, "errors": errors if code == 422 else []}
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if code == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer"},
                }
            }
        responses[code] = entry
    return responses


API_ERRORS = (401, 422, 429, 503)
