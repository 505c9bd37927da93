"""Property-based tests of the management API against its own OpenAPI document.

schemathesis generates requests from the schema, valid ones and broken ones, and checks
every answer: no 5xx, a documented status code, content type and headers, a body that
matches the documented schema, and authentication actually enforced. The app runs in
process, on the session's real PostgreSQL, Redis and S3 server, with a few rows to find.
Kept short (a few examples per operation) so `make test` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, note, settings
from schemathesis import GenerationMode
from schemathesis.python import asgi

from api.app import create_app
from shared.models import User
from shared.settings import Settings
from tests.api.conftest import Rows, get_token
from tests.services import derive_settings

# Not the live feed (/stream never ends) nor the MCP mount (not an OpenAPI operation).
MANAGEMENT_API = (
    r"^/api/v1/(auth|emails|attachments|conversations|search|events|deliveries|dead-letters)"
)
EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def api_schema(
    api_settings: Settings,
    make_user: Callable[..., User],
    rows: Rows,
) -> Iterator[tuple[Any, dict[str, str]]]:
    # Limits high enough that the generated requests reach the routes, not the 429.
    app = create_app(derive_settings(api_settings, rate_limit_api="100000/minute"))
    delivery = rows.delivery()
    email = rows.email(delivery, attachments=[("a.txt", "text/plain", b"attached")])
    rows.event(delivery=delivery)
    rows.dead_letter(delivery)
    rows.delivery_event(delivery, 0, "stored", email_id=email.id)
    make_user()
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    with asgi.get_client(app) as client:
        token = get_token(client)  # type: ignore[arg-type]
    try:
        yield schema.include(path_regex=MANAGEMENT_API), {"Authorization": f"Bearer {token}"}
    finally:
        asgi.shutdown_lifespans()


def _without_cursor(case: Any) -> Any:
    if case.query:
        case.query.pop("cursor", None)
    return case


def test_every_operation_answers_as_documented(api_schema: tuple[Any, dict[str, str]]) -> None:
    schema, auth = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every route of the management API is in the document (and so is tested here).
    assert len(operations) == 18, [operation.label for operation in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _check(operation, mode, auth)


def _check(operation: Any, mode: GenerationMode, auth: dict[str, str]) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        # A cursor is opaque: only one the API made is valid, which no schema can say; a
        # made-up one is refused (422), as the negative cases check.
        strategy = strategy.map(_without_cursor)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        note(f"{operation.label} ({mode.value})")
        case.call_and_validate(headers=auth)

    check()
