"""Rate limits over the real app and the real Redis that every replica shares."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient

from shared.models import User
from shared.settings import Settings
from tests.api.conftest import PASSWORD, get_token
from tests.http_checks import PROXY_PEER, UNTRUSTED_PEER, assert_rate_limited
from tests.services import derive_settings

TOKEN = "/api/v1/auth/token"
WRONG = {"username": "ops", "password": "not the password"}


@pytest.fixture
def limited(api_settings: Settings) -> Settings:
    return derive_settings(
        api_settings,
        rate_limit_token="3/minute",
        rate_limit_api="4/minute",
        trusted_proxies="10.0.0.0/8",
    )


# --- the token endpoint, per client -------------------------------------------------


def test_token_endpoint_answers_429_after_its_limit_even_for_the_right_password(
    make_client: Callable[..., TestClient], limited: Settings, make_user: Callable[..., User]
) -> None:
    make_user()
    client = make_client(limited)
    for _ in range(3):
        assert client.post(TOKEN, data=WRONG).status_code == 401
    assert_rate_limited(client.post(TOKEN, data=WRONG))
    # Guessing stops being possible, including the right guess.
    assert_rate_limited(client.post(TOKEN, data={"username": "ops", "password": PASSWORD}))


def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_reset_the_limit(
    make_client: Callable[..., TestClient], limited: Settings, make_user: Callable[..., User]
) -> None:
    make_user()
    client = make_client(limited, client=UNTRUSTED_PEER)
    for n in range(3):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert client.post(TOKEN, data=WRONG, headers=headers).status_code == 401
    for spoofed in ("203.0.113.99", "192.0.2.1, 203.0.113.98", "10.0.0.9"):
        response = client.post(TOKEN, data=WRONG, headers={"X-Forwarded-For": spoofed})
        assert_rate_limited(response)


def test_forwarded_for_from_a_trusted_proxy_keys_each_client_apart(
    make_client: Callable[..., TestClient], limited: Settings, make_user: Callable[..., User]
) -> None:
    make_user()
    client = make_client(limited, client=PROXY_PEER)
    # The proxy appends the address it saw; whatever the client wrote to the left of it
    # changes nothing.
    for n in range(3):
        headers = {"X-Forwarded-For": f"1.2.3.{n}, 203.0.113.5"}
        assert client.post(TOKEN, data=WRONG, headers=headers).status_code == 401
    assert_rate_limited(client.post(TOKEN, data=WRONG, headers={"X-Forwarded-For": "203.0.113.5"}))
    # Another client behind the same proxy has a bucket of its own.
    other = client.post(TOKEN, data=WRONG, headers={"X-Forwarded-For": "203.0.113.6"})
    assert other.status_code == 401


def test_replicas_share_the_limit_through_redis(
    make_client: Callable[..., TestClient], limited: Settings, make_user: Callable[..., User]
) -> None:
    make_user()
    first, second = make_client(limited), make_client(limited)
    for replica in (first, second, first):
        assert replica.post(TOKEN, data=WRONG).status_code == 401
    assert_rate_limited(second.post(TOKEN, data=WRONG))


def test_limits_survive_redis_forgetting_its_scripts(
    make_client: Callable[..., TestClient],
    limited: Settings,
    make_user: Callable[..., User],
    redis_client: redis.Redis,
) -> None:
    make_user()
    client = make_client(limited)
    assert client.post(TOKEN, data=WRONG).status_code == 401
    redis_client.script_flush()  # what a Redis restart does
    for _ in range(2):
        assert client.post(TOKEN, data=WRONG).status_code == 401
    assert_rate_limited(client.post(TOKEN, data=WRONG))


def test_unreachable_redis_is_503_not_an_open_door(
    make_client: Callable[..., TestClient], api_settings: Settings
) -> None:
    client = make_client(derive_settings(api_settings, redis_url="redis://127.0.0.1:1/0"))
    response = client.post(TOKEN, data=WRONG)
    assert response.status_code == 503
    assert "rate limiter" in response.json()["message"]


# --- the management API, per user ---------------------------------------------------


def test_management_api_is_limited_per_user(
    make_client: Callable[..., TestClient], limited: Settings, make_user: Callable[..., User]
) -> None:
    make_user("ana")
    make_user("bob")
    client = make_client(limited)
    ana = {"Authorization": f"Bearer {get_token(client, 'ana')}"}
    bob = {"Authorization": f"Bearer {get_token(client, 'bob')}"}
    # One bucket per user across every route of the API.
    for path in ("/api/v1/emails", "/api/v1/events", "/api/v1/deliveries", "/api/v1/emails/1"):
        assert client.get(path, headers=ana).status_code in (200, 404)
    assert_rate_limited(client.get("/api/v1/dead-letters", headers=ana))
    assert client.get("/api/v1/emails", headers=bob).status_code == 200
