"""Tests for worker.handoff.routes: validation and first-match routing (pure), and that
hand-off signatures verify with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.worker.test_derive import inbound
from tests.worker.test_loop_guard import list_reply
from worker.handoff.http import sign
from worker.handoff.outbox import match_input
from worker.handoff.routes import (
    HttpHandler,
    MatchInput,
    RouteError,
    RouteTable,
    environment_problems,
    load_routes,
    parse_routes,
    read_routes,
    secret_envs,
    signing_key,
)
from worker.ingest.derive import email_columns

ROUTES = Path(__file__).resolve().parents[1] / "fixtures" / "handoff" / "routes.yaml"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
ENV = {"KAVE_HANDOFF_SECRET_PLATFORM": SECRET}


def email(
    recipient: str = "inbox@example.com",
    *,
    sender: str | None = "ana@customer.example",
    subject: str | None = "hello",
    mailbox_hash: str | None = None,
    auto: bool = False,
    bulk: bool = False,
) -> MatchInput:
    return MatchInput(recipient, sender, subject, mailbox_hash, auto, bulk)


def test_first_matching_route_wins() -> None:
    table = load_routes(ROUTES, ENV)
    assert [r.name for r in table.routes] == ["tickets", "invoices", "bounces", "everything-else"]
    assert table.routes[-1].is_catch_all
    assert routed(table, email("in+ticket-42@x.com", mailbox_hash="ticket-42")) == "tickets"
    invoice = email("ap@Billing.Example.com", subject="Your INVOICE 7")
    assert routed(table, invoice) == "invoices"
    assert routed(table, email("ap@billing.example.com", subject="hi")) == "everything-else"
    assert routed(table, email()) == "everything-else"


def test_a_route_excluding_auto_submitted_never_takes_an_out_of_office() -> None:
    table = load_routes(ROUTES, ENV)
    oof = email("in+ticket-42@x.com", mailbox_hash="ticket-42", auto=True)
    assert routed(table, oof) == "bounces"


def test_a_route_excluding_bulk_skips_list_mail() -> None:
    table = parse_routes(
        {
            "routes": [
                {"name": "support", "match": {"auto_submitted": False, "bulk": False},
                 "handler": _celery("kave.handlers.support")},
                {"name": "lists", "match": {"bulk": True}, "handler": _celery()},
            ]
        }
    )  # fmt: skip
    assert routed(table, email()) == "support"
    assert routed(table, email(bulk=True)) == "lists"  # a person's reply through a list
    assert routed(table, email(auto=True)) is None


def test_a_ticket_route_with_bulk_false_skips_a_derived_list_mail() -> None:
    # From the parsed email to the route, as the worker goes (outbox.match_input).
    parsed = inbound(list_reply(), recipient="support+ticket-42@example.com")
    values = {
        "envelope_recipient": parsed.envelope_recipient,
        "from_address": parsed.from_address,
        "subject": parsed.subject,
        **email_columns(parsed),
    }
    table = load_routes(ROUTES, ENV)  # tickets: {auto_submitted: false, bulk: false}
    assert routed(table, match_input(values)) == "everything-else"
    assert routed(table, match_input({**values, "bulk": False})) == "tickets"


def test_no_catch_all_leaves_mail_unrouted() -> None:
    table = parse_routes(
        {"routes": [{"name": "a", "match": {"sender": "*@x.org"}, "handler": _celery()}]}
    )
    assert table.first_match(email()) is None


def routed(table: RouteTable, message: MatchInput) -> str | None:
    route = table.first_match(message)
    return route.name if route is not None else None


def _celery(task: str = "kave.handlers.a") -> dict[str, object]:
    return {"celery": {"task": task, "queue": "platform"}}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"routes": [{"name": "a", "handler": _celery("other.task")}]}, "routes.0.handler"),
        ({"routes": [{"name": "Bad Name", "handler": _celery()}]}, "routes.0.name"),
        ({"routes": [{"name": "a", "handler": _celery()}] * 2}, "used twice"),
        (
            {"routes": [{"name": "a", "match": {"subject": "("}, "handler": _celery()}]},
            "regular expression",
        ),
        ({"routes": [{"name": "a", "match": {"colour": "red"}, "handler": _celery()}]}, "colour"),
        (
            {
                "routes": [
                    {
                        "name": "a",
                        "handler": {
                            "http": {"url": "http://h/x", "secret_env": "KAVE_HANDOFF_MISSING"}
                        },
                    }
                ]
            },
            "KAVE_HANDOFF_MISSING must hold a secret",
        ),
    ],
)
def test_invalid_routes_are_refused_with_where(document: object, problem: str) -> None:
    with pytest.raises(RouteError, match=problem):
        parse_routes(document, {})


def test_signing_key_decodes_whsec() -> None:
    table = load_routes(ROUTES, ENV)
    handler = table.routes[1].handler
    assert isinstance(handler, HttpHandler)
    assert signing_key(handler.http, ENV) == b"k" * 32
    # A secret mounted from a file ends with a newline; the libraries ignore it too.
    assert signing_key(handler.http, {"KAVE_HANDOFF_SECRET_PLATFORM": SECRET + "\n"}) == b"k" * 32


def _http_route(url: str = "https://platform.example/hooks", **extra: object) -> dict[str, object]:
    target = {"url": url, "secret_env": "KAVE_HANDOFF_SECRET_PLATFORM", **extra}
    return {"routes": [{"name": "platform", "handler": {"http": target}}]}


def fixed_bytes(size: int) -> bytes:
    """Key bytes that look random but are the same in every test process: pytest-xdist
    refuses to run when the processes collect different parameter ids."""
    return hashlib.sha512(f"kave-handoff-test-key-{size}".encode()).digest()[:size]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(fixed_bytes(32), id="32-bytes"),  # base64 with padding ("=")
        pytest.param(fixed_bytes(24), id="24-bytes"),  # none needed
        pytest.param(fixed_bytes(64), id="64-bytes"),
    ],
)
@pytest.mark.parametrize("padded", [True, False])
def test_signatures_verify_with_the_standard_webhooks_library(key: bytes, padded: bool) -> None:
    encoded = base64.b64encode(key).decode()
    secret = "whsec_" + (encoded if padded else encoded.rstrip("="))
    table = parse_routes(_http_route(), {"KAVE_HANDOFF_SECRET_PLATFORM": secret})
    handler = table.routes[0].handler
    assert isinstance(handler, HttpHandler)
    derived = signing_key(handler.http, {"KAVE_HANDOFF_SECRET_PLATFORM": secret})
    assert derived == key
    body, message_id, timestamp = b'{"email": {"id": 1}}', "dispatch-7-abc", int(time.time())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(derived, message_id, timestamp, body),
    }
    reference = Webhook(secret)
    assert reference.verify(body, headers) == {"email": {"id": 1}}
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    assert reference.sign(message_id, moment, body) == headers["webhook-signature"]


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        # A raw string: the handler's library would base64-decode it into another key.
        ("a-raw-signing-secret-of-40-characters-xyz", "does not start with whsec_"),
        (base64.b64encode(fixed_bytes(32)).decode(), "does not start with whsec_"),
        (" " + SECRET, "does not start with whsec_"),
        ("whsec_" + "not base64 at all!" * 3, "part after whsec_ is base64"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "is base64"),
        ("whsec_" + "QUJD" * 10 + "A", "is base64"),  # one character past a full group
        ("whsec_" + base64.b64encode(fixed_bytes(16)).decode(), "decodes to 16"),
    ],
)
def test_secrets_not_in_the_standard_webhooks_form_are_refused_naming_the_route(
    secret: str, problem: str
) -> None:
    with pytest.raises(RouteError) as refused:
        parse_routes(_http_route(), {"KAVE_HANDOFF_SECRET_PLATFORM": secret})
    message = str(refused.value)
    assert message.startswith("route 'platform': KAVE_HANDOFF_SECRET_PLATFORM must hold")
    assert problem in message
    assert "whsec_ + base64" in message  # says what to set instead
    if secret.strip():
        assert secret.removeprefix("whsec_") not in message


def test_plain_http_handlers_are_refused_in_production_unless_the_route_allows_it() -> None:
    production = {**ENV, "KAVE_ENV": "production"}
    with pytest.raises(RouteError) as refused:
        parse_routes(_http_route("http://platform.internal/hooks"), production)
    message = str(refused.value)
    assert message.startswith("route 'platform': handler url http://platform.internal/hooks")
    assert "allow_insecure_http: true" in message
    allowed = _http_route("http://platform.internal/hooks", allow_insecure_http=True)
    assert parse_routes(allowed, production).routes[0].name == "platform"
    assert parse_routes(_http_route("https://platform.example/hooks"), production).routes
    # Outside production (a laptop, the tests) http:// is fine.
    assert parse_routes(_http_route("http://127.0.0.1:9/hooks"), ENV).routes
    # The fixture's http handler, loaded the way a production worker would.
    with pytest.raises(RouteError, match=re.escape("route 'invoices': handler url http://")):
        load_routes(ROUTES, production)


def test_json_routes_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": [{"name": "all", "handler": _celery()}]}))
    assert load_routes(path).routes[0].name == "all"
    with pytest.raises(RouteError, match="cannot read"):
        load_routes(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes: [\n")
    with pytest.raises(RouteError, match="not valid YAML"):
        load_routes(broken)


def _two_secrets() -> dict[str, object]:
    def http(name: str, secret_env: str) -> dict[str, object]:
        target = {"url": "https://platform.example/hooks", "secret_env": secret_env}
        return {"name": name, "match": {"sender": f"*@{name}.example"}, "handler": {"http": target}}

    return {
        "routes": [
            http("crm", "KAVE_HANDOFF_SECRET_CRM"),
            http("helpdesk", "KAVE_HANDOFF_SECRET_HELPDESK"),
            http("helpdesk-eu", "KAVE_HANDOFF_SECRET_HELPDESK"),
            {"name": "rest", "handler": _celery()},
        ]
    }


def test_every_missing_secret_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(_two_secrets()))
    # Read as a document, the file needs no secret (kave routes validate starts there).
    table = read_routes(path)
    assert secret_envs(table) == ("KAVE_HANDOFF_SECRET_CRM", "KAVE_HANDOFF_SECRET_HELPDESK")
    (problem,) = environment_problems(table, {"KAVE_HANDOFF_SECRET_HELPDESK": SECRET})
    assert problem.startswith(
        "route 'crm': KAVE_HANDOFF_SECRET_CRM must hold a secret and is not set in this "
        "environment; set it to whsec_"
    )
    assert len(environment_problems(table, {})) == 3
    assert (
        environment_problems(
            table, {"KAVE_HANDOFF_SECRET_CRM": SECRET, "KAVE_HANDOFF_SECRET_HELPDESK": SECRET}
        )
        == []
    )
    # A worker loading it refuses it with every problem in one message.
    with pytest.raises(RouteError) as refused:
        load_routes(path, {})
    message = str(refused.value)
    assert "KAVE_HANDOFF_SECRET_CRM must hold" in message
    assert "route 'helpdesk-eu': KAVE_HANDOFF_SECRET_HELPDESK must hold" in message
