"""The management API's settings fail fast, with a message that names what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings, parse_rate

PRODUCTION = {
    "env": "production",
    "database_url": "postgresql://db/kave",
    "redis_url": "redis://:Vq7xK2mZ9pL4sT8wN3bR6y@redis:6379/0",
    "mandrill_webhook_urls": "https://mail.example.com/api/v1/webhooks/mailchimp",
    "mandrill_webhook_keys": "key",
    "object_store": "s3",
    "s3_bucket": "kave",
}
GOOD_KEY = "v8Jq3kR0bC7nXz1LwT5yHs9MdA2pFe6G"


def build(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_production_requires_a_jwt_secret_key() -> None:
    with pytest.raises(ValidationError, match="KAVE_JWT_SECRET_KEY"):
        build(**PRODUCTION)
    with pytest.raises(ValidationError, match="KAVE_JWT_SECRET_KEY"):
        build(**PRODUCTION, jwt_secret_key="")
    settings = build(**PRODUCTION, jwt_secret_key=GOOD_KEY)
    assert settings.jwt_key() == GOOD_KEY
    assert GOOD_KEY not in repr(settings)


@pytest.mark.parametrize(
    "key", ["short-secret", "change-me-change-me-change-me-change-me", "x" * 31]
)
def test_production_refuses_placeholder_or_short_keys(key: str) -> None:
    with pytest.raises(
        ValidationError, match=r"KAVE_JWT_SECRET_KEY (is a placeholder|is too short)"
    ):
        build(**PRODUCTION, jwt_secret_key=key)


def test_development_makes_up_a_key_per_process() -> None:
    first, second = build(), build()
    assert len(first.jwt_key()) >= 32
    assert first.jwt_key() == first.jwt_key()
    assert first.jwt_key() != second.jwt_key()
    assert build(jwt_secret_key="dev").jwt_key() == "dev"


def test_rates_are_read_and_checked() -> None:
    assert parse_rate("10/minute") == (10, 60)
    assert parse_rate(" 5 / second ") == (5, 1)
    assert parse_rate("1000/day") == (1000, 86400)
    for bad in ("10", "ten/minute", "0/minute", "10/week"):
        with pytest.raises(ValidationError, match="N/second"):
            build(rate_limit_token=bad)


def test_lists_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAVE_CORS_ORIGINS", "https://a.example/, https://b.example")
    monkeypatch.setenv("KAVE_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7, ::1")
    settings = build()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert [str(network) for network in settings.trusted_proxies] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "::1/128",
    ]


def test_defaults_trust_no_proxy_and_allow_no_origin() -> None:
    settings = build()
    assert settings.cors_origins == []
    assert settings.trusted_proxies == []


def test_a_bad_proxy_address_is_refused() -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        build(trusted_proxies="10.0.0.0/33")
