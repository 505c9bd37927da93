"""The per-client limit on refused webhook POSTs, and the gate's one verdict per request,
over the real app and the real Redis that every replica shares."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from receiver.metrics import ReceiverMetrics
from shared.settings import Settings
from tests.http_checks import PROXY_PEER, UNTRUSTED_PEER, assert_rate_limited
from tests.ops.support import value
from tests.services import derive_settings
from tests.webhooks import WEBHOOK_PATH, fixture_events, signed_form

FORGED = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def limited(receiver_settings: Settings) -> Settings:
    return derive_settings(
        receiver_settings,
        rate_limit_webhook_signature_failures="5/minute",
        trusted_proxies="10.0.0.0/8",
        max_body_bytes=64 * 1024,
    )


def _metrics(client: TestClient) -> str:
    metrics: ReceiverMetrics = client.app.state.metrics  # type: ignore[attr-defined]
    return generate_latest(metrics.registry).decode()


def test_every_kind_of_refusal_counts_and_past_the_limit_each_becomes_429(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    client = make_client(limited)
    body, headers = signed_form(fixture_events("send.json"))
    forged = {**headers, "X-Mandrill-Signature": FORGED}
    unsigned = {"Content-Type": FORM}
    refusals = [
        (401, body, forged),  # wrong signature
        (401, body, unsigned),  # no signature
        (400, b"something=else", forged),  # no mandrill_events
        (400, b"&".join([b"a=1"] * 9), forged),  # more than KAVE_MAX_FORM_FIELDS
        (413, b"x" * (65 * 1024), forged),
    ]
    for status, content, sent in refusals:
        assert client.post(WEBHOOK_PATH, content=content, headers=sent).status_code == status
    # Five refusals: the sixth of any kind is 429, the ones that need no body included.
    assert_rate_limited(client.post(WEBHOOK_PATH, content=b"x", headers={}))  # would be 415
    assert_rate_limited(client.post(WEBHOOK_PATH, content=body, headers=unsigned))
    assert_rate_limited(client.post(WEBHOOK_PATH, content=body, headers=forged))
    # A correctly signed batch from the same client is never refused, nor counted.
    for _ in range(3):
        accepted = client.post(WEBHOOK_PATH, content=body, headers=headers)
        assert accepted.status_code == 200
        assert accepted.json()["status"] == "accepted"
    # Other clients have their own count.
    other = make_client(limited, client=UNTRUSTED_PEER)
    assert other.post(WEBHOOK_PATH, content=body, headers=forged).status_code == 401
    assert other.post(WEBHOOK_PATH, content=b"x", headers={}).status_code == 415

    text = _metrics(client)
    for reason, count in [
        ("mismatch", 1),
        ("missing", 1),
        ("bad_form", 1),
        ("too_many_fields", 1),
        ("too_large", 1),
        ("limited", 3),
    ]:
        assert value(text, "kave_receiver_webhook_refusals_total", reason=reason) == count
    # Signature failures are the 401s, as before: a limited request is counted as limited.
    assert value(text, "kave_receiver_signature_failures_total", reason="mismatch") == 1
    assert value(text, "kave_receiver_signature_failures_total", reason="missing") == 1
    assert value(text, "kave_receiver_webhook_requests_total", status="429") == 3
    assert value(text, "kave_receiver_webhook_requests_total", outcome="accepted") == 3


def test_signed_batches_are_not_counted(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    client = make_client(limited)
    body, headers = signed_form(fixture_events("send.json"))
    for _ in range(8):
        assert client.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 200
    forged = {**headers, "X-Mandrill-Signature": FORGED}
    assert client.post(WEBHOOK_PATH, content=body, headers=forged).status_code == 401


def test_the_limit_follows_the_client_behind_a_trusted_proxy_and_is_shared_by_replicas(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    first = make_client(limited, client=PROXY_PEER)
    second = make_client(limited, client=PROXY_PEER)
    attacker = {"Content-Type": FORM, "X-Forwarded-For": "203.0.113.5"}
    for replica in (first, second, first, second, first):
        assert replica.post(WEBHOOK_PATH, content=b"", headers=attacker).status_code == 401
    assert_rate_limited(second.post(WEBHOOK_PATH, content=b"", headers=attacker))
    # Mandrill, behind the same proxy but at its own address, is not affected at all.
    body, headers = signed_form(fixture_events("send.json"))
    mandrill = {**headers, "X-Forwarded-For": "198.2.128.1"}
    assert first.post(WEBHOOK_PATH, content=body, headers=mandrill).status_code == 200
    unsigned = {"Content-Type": FORM, "X-Forwarded-For": "198.2.128.1"}
    assert second.post(WEBHOOK_PATH, content=b"", headers=unsigned).status_code == 401


def test_not_configured_is_503_and_never_counted(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    unconfigured = derive_settings(limited, mandrill_webhook_keys=[], mandrill_webhook_urls=[])
    client = make_client(unconfigured)
    body, headers = signed_form(fixture_events("send.json"))
    for _ in range(7):
        assert client.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 503
    text = _metrics(client)
    assert value(text, "kave_receiver_webhook_refusals_total", reason="not_configured") == 7


def test_without_redis_the_refusal_goes_out_as_it_is(
    make_client: Callable[..., TestClient], limited: Settings
) -> None:
    client = make_client(derive_settings(limited, redis_url="redis://127.0.0.1:1/0"))
    for _ in range(7):
        response = client.post(WEBHOOK_PATH, content=b"", headers={"Content-Type": FORM})
        assert response.status_code == 401
