"""Routes on the sender's verdict: ``sender_trust``, ``from_allow`` and ``from_deny``
match the visible From: as authenticated, never the envelope (pure test)."""

from __future__ import annotations

from worker.handoff.outbox import match_input
from worker.handoff.routes import MatchInput, RouteTable, parse_routes

HANDLER = {"celery": {"task": "kave.handlers.a", "queue": "platform"}}


def table(*matches: dict[str, object]) -> RouteTable:
    routes = [{"name": f"r{i}", "match": m, "handler": HANDLER} for i, m in enumerate(matches)]
    return parse_routes({"routes": routes})


def email(sender: str | None, verdict: str | None) -> MatchInput:
    return MatchInput("inbox@example.com", sender, "hi", None, False, False, verdict)


def routed(routes: RouteTable, message: MatchInput) -> str | None:
    route = routes.first_match(message)
    return route.name if route is not None else None


def test_a_route_requiring_pass_takes_only_proven_senders() -> None:
    routes = table({"sender_trust": "pass"})
    assert routed(routes, email("a@customer.test", "pass")) == "r0"
    for verdict in ("fail", "none", "unknown", None):
        assert routed(routes, email("a@customer.test", verdict)) is None


def test_an_allow_list_needs_the_aligned_from_not_just_its_name() -> None:
    routes = table({"from_allow": ["customer.test", "boss@partner.test"]})
    assert routed(routes, email("a@customer.test", "pass")) == "r0"
    assert routed(routes, email("BOSS@partner.test", "pass")) == "r0"
    # The same From: unproven (forged, or DNS down): not allowed.
    assert routed(routes, email("a@customer.test", "fail")) is None
    assert routed(routes, email("a@customer.test", "unknown")) is None
    # Proven, but another address or domain than listed.
    assert routed(routes, email("other@partner.test", "pass")) is None
    assert routed(routes, email("a@sub.customer.test", "pass")) is None
    assert routed(table({"from_allow": ["*.customer.test"]}), email("a@sub.customer.test", "pass"))


def test_a_deny_list_refuses_the_visible_from_whatever_the_verdict() -> None:
    routes = table({"from_deny": ["bank.test"]}, {})
    assert routed(routes, email("ceo@bank.test", "fail")) == "r1"
    assert routed(routes, email("ceo@bank.test", "pass")) == "r1"
    assert routed(routes, email("a@customer.test", "none")) == "r0"


def test_the_outbox_matches_on_the_from_column_and_verdict_never_the_envelope() -> None:
    routes = table({"from_allow": ["customer.test"]})
    values = {
        "envelope_recipient": "inbox@example.com",
        "from_address": "ceo@bank.test",
        # What an envelope sender would look like: no column of it is matched.
        "headers": [["Return-Path", "<a@customer.test>"]],
        "sender_trust": "pass",
    }
    assert routed(routes, match_input(values)) is None
    values["from_address"] = "a@customer.test"
    assert routed(routes, match_input(values)) == "r0"
