"""The per-account limit on failed logins, against a real uvicorn API process and the
session's Redis: it holds across client addresses, counts failures only, is atomic under
a burst, and refuses unknown names the same way."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from api.ratelimit import account_identity
from shared.models import User
from shared.settings import Settings
from tests.api.conftest import PASSWORD
from tests.http_checks import assert_rate_limited
from tests.services import api_process, derive_settings

TOKEN = "/api/v1/auth/token"
FAILURES = 3


@pytest.fixture(scope="module")
def api_url(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The per-address limit is far away, so every 429 below is the per-account one. The
    # loopback peer is a trusted proxy: each X-Forwarded-For below is a client of its own.
    settings = derive_settings(
        base_settings,
        queue_name=f"kave-login-{uuid.uuid4().hex[:8]}",
        rate_limit_token="1000/minute",
        rate_limit_login_failures=f"{FAILURES}/minute",
        trusted_proxies="127.0.0.1/32",
    )
    log_path = tmp_path_factory.mktemp("api-login") / "api.log"
    with api_process(settings, log_path) as base:
        yield base


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def _login(client: httpx.Client, name: str, password: str, address: str) -> httpx.Response:
    return client.post(
        TOKEN,
        data={"username": name, "password": password},
        headers={"X-Forwarded-For": address},
    )


def _name() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _assert_account_limited(response: httpx.Response, name: str) -> None:
    assert_rate_limited(response)
    message = response.json()["message"]
    assert "too many failed logins for this account" in message
    assert name not in message


def test_failures_from_many_addresses_lock_the_account_not_the_others(
    client: httpx.Client, make_user: Callable[..., User]
) -> None:
    target, bystander = _name(), _name()
    make_user(target)
    make_user(bystander)
    for n in range(FAILURES):
        assert _login(client, target, "wrong guess", f"203.0.113.{n}").status_code == 401
    # A new address changes nothing: the account is over its limit, for every password.
    _assert_account_limited(_login(client, target, "another guess", "198.51.100.9"), target)
    _assert_account_limited(_login(client, target, PASSWORD, "198.51.100.10"), target)
    # Another account, even from an address that just failed, logs in.
    assert _login(client, bystander, PASSWORD, "203.0.113.0").status_code == 200


def test_successful_logins_are_not_counted(
    client: httpx.Client, make_user: Callable[..., User]
) -> None:
    name = _name()
    make_user(name)
    for _ in range(FAILURES + 2):
        assert _login(client, name, PASSWORD, "192.0.2.1").status_code == 200
    # Two failures, a success (given back), then a third failure: still under the limit.
    assert _login(client, name, "wrong guess", "192.0.2.1").status_code == 401
    assert _login(client, name, "wrong guess", "192.0.2.2").status_code == 401
    assert _login(client, name, PASSWORD, "192.0.2.3").status_code == 200
    assert _login(client, name, "wrong guess", "192.0.2.4").status_code == 401
    _assert_account_limited(_login(client, name, "wrong guess", "192.0.2.5"), name)


def test_a_parallel_burst_gets_no_more_guesses_than_the_limit(
    api_url: str, make_user: Callable[..., User]
) -> None:
    name = _name()
    make_user(name)
    burst = 4 * FAILURES

    def guess(n: int) -> int:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            return _login(client, name, f"guess {n}", f"203.0.113.{100 + n}").status_code

    with ThreadPoolExecutor(max_workers=burst) as pool:
        statuses = list(pool.map(guess, range(burst)))
    assert sorted(statuses) == [401] * FAILURES + [429] * (burst - FAILURES)


def test_unknown_names_are_limited_like_real_ones(client: httpx.Client) -> None:
    # Otherwise a 429 would tell which names belong to users.
    name = _name()
    for n in range(FAILURES):
        assert _login(client, name, "wrong guess", f"192.0.2.{10 + n}").status_code == 401
    _assert_account_limited(_login(client, name, "wrong guess", "192.0.2.20"), name)


def test_the_account_bucket_is_keyed_by_a_hash_of_the_name(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    name = _name()
    assert _login(client, name, "wrong guess", "192.0.2.30").status_code == 401
    keys = [key.decode() for key in redis_client.scan_iter(match="kave:ratelimit:*")]
    assert [key for key in keys if key.endswith(account_identity(name))]
    # What was typed as a name (sometimes a password in the wrong field) is not a key.
    assert not any(name in key for key in keys)
