"""Tests for shared.handoff_routes: validation and first-match routing (pure)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shared.handoff_routes import (
    HttpHandler,
    MatchInput,
    RouteError,
    RouteTable,
    load_routes,
    parse_routes,
    signing_key,
)

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
) -> MatchInput:
    return MatchInput(recipient, sender, subject, mailbox_hash, auto)


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


def test_signing_key_decodes_whsec_and_refuses_short_secrets() -> None:
    table = load_routes(ROUTES, ENV)
    handler = table.routes[1].handler
    assert isinstance(handler, HttpHandler)
    assert signing_key(handler.http, ENV) == b"k" * 32
    with pytest.raises(RouteError, match="at least 24 bytes"):
        signing_key(handler.http, {"KAVE_HANDOFF_SECRET_PLATFORM": "short"})


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
