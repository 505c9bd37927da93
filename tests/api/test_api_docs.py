"""The management API's contract: its OpenAPI document, error bodies and CORS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings
from tests.services import derive_settings

MANAGEMENT = ("/api/v1/auth", "/api/v1/emails", "/api/v1/attachments", "/api/v1/events")
MANAGEMENT += ("/api/v1/deliveries", "/api/v1/dead-letters")


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        if path.startswith(MANAGEMENT)
        for method, operation in item.items()
    ]


def _has_example(response: dict[str, Any], document: dict[str, Any]) -> bool:
    for media in response.get("content", {}).values():
        if "example" in media or "examples" in media:
            return True
        ref = media.get("schema", {}).get("$ref")
        if ref:
            schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
            if schema.get("examples"):
                return True
    return False


def test_every_operation_is_documented_with_examples(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json").json()
    operations = _operations(document)
    assert len(operations) == 14  # 12, DELETE /emails/{id} (erasure), GET /emails/{id}/dispatches
    for method, path, operation in operations:
        label = f"{method} {path}"
        assert operation.get("summary"), label
        assert operation.get("description"), label
        for status, response in operation["responses"].items():
            assert response.get("description"), f"{label} {status}"
            assert _has_example(response, document), f"{label} {status} has no example"
        statuses = set(operation["responses"])
        assert {"401", "422", "429"} <= statuses or path == "/api/v1/auth/token", label
        if path != "/api/v1/auth/token":
            assert operation["security"] == [{"OAuth2PasswordBearer": []}], label
    scheme = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert client.get("/api/v1/docs").status_code == 200


def test_error_bodies_share_one_shape(client: TestClient, auth: dict[str, str]) -> None:
    answers = [
        client.get("/api/v1/emails"),  # 401
        client.get("/api/v1/emails/12345", headers=auth),  # 404
        client.get("/api/v1/emails", headers=auth, params={"limit": "x"}),  # 422
        client.post("/api/v1/dead-letters/1/discard", headers=auth),  # 404
    ]
    assert [answer.status_code for answer in answers] == [401, 404, 422, 404]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"status", "message", "errors"}
        assert body["status"] == "error"
        assert body["message"]
    assert [error["field"] for error in answers[2].json()["errors"]] == ["query.limit"]
    assert all(answer.json()["errors"] == [] for answer in (answers[0], answers[1], answers[3]))


def _preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/api/v1/emails",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_no_cross_origin_access_by_default(client: TestClient) -> None:
    response = _preflight(client, "https://app.example.com")
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("configured", ["https://app.example.com", "https://app.example.com/"])
def test_configured_origins_may_call_the_api(
    make_client: Callable[..., TestClient], api_settings: Settings, configured: str
) -> None:
    client = make_client(derive_settings(api_settings, cors_origins=configured))
    allowed = _preflight(client, "https://app.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    other = _preflight(client, "https://evil.example.net")
    assert "access-control-allow-origin" not in other.headers
    simple = client.get("/api/v1/emails", headers={"Origin": "https://app.example.com"})
    assert simple.status_code == 401  # CORS opens the door to the API, not past its auth
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
