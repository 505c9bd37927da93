"""Settings fail fast, with a message that names what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def build(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_production_names_every_missing_setting() -> None:
    with pytest.raises(ValidationError) as caught:
        build(env="production", object_store="s3", s3_bucket="b")
    message = str(caught.value)
    for name in (
        "KAVE_DATABASE_URL",
        "KAVE_REDIS_URL",
        "KAVE_MANDRILL_WEBHOOK_URLS",
        "KAVE_MANDRILL_WEBHOOK_KEYS",
    ):
        assert name in message


def test_production_refuses_the_local_object_store() -> None:
    with pytest.raises(ValidationError, match="KAVE_OBJECT_STORE=s3"):
        build(
            env="production",
            database_url="postgresql://db/kave",
            redis_url="redis://r:6379/0",
            mandrill_webhook_urls="https://x/hook",
            mandrill_webhook_keys="k",
        )


_PRODUCTION = {
    "env": "production",
    "database_url": "postgresql://db/kave",
    "redis_url": "redis://r:6379/0",
    "mandrill_webhook_urls": "https://x/hook",
    "mandrill_webhook_keys": "k",
    "object_store": "s3",
    "s3_bucket": "b",
    "jwt_secret_key": "v8Jq3kR0bC7nXz1LwT5yHs9MdA2pFe6G",
}


@pytest.mark.parametrize("token", [None, "", "short", "change-me-change-me-change-me-change-me"])
def test_production_requires_a_real_metrics_token(token: str | None) -> None:
    values = {**_PRODUCTION, "metrics_token": token} if token is not None else _PRODUCTION
    with pytest.raises(ValidationError, match="KAVE_METRICS_TOKEN"):
        build(**values)
    good = build(**_PRODUCTION, metrics_token="Zq8Lr2Vn6Tx0Bc4Hm9Kp3Wd7Fs1Gj5Ya")
    assert good.metrics_token is not None


def test_visibility_timeout_must_exceed_the_task_time_limit() -> None:
    with pytest.raises(ValidationError, match="KAVE_VISIBILITY_TIMEOUT_SECONDS"):
        build(visibility_timeout_seconds=100, task_time_limit_seconds=100)


def test_lists_are_read_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAVE_MANDRILL_WEBHOOK_KEYS", "new-key, old-key")
    monkeypatch.setenv("KAVE_MANDRILL_WEBHOOK_URLS", "https://a/hook,https://b/hook/")
    settings = build()
    assert settings.webhook_keys() == ["new-key", "old-key"]
    assert settings.mandrill_webhook_urls == ["https://a/hook", "https://b/hook/"]
    assert "new-key" not in repr(settings)


def test_missing_database_url_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="kave run"):
        build().require_database_url()


def test_as_environment_round_trips_secrets_and_lists() -> None:
    settings = build(
        mandrill_webhook_keys="new-key,old-key",
        mandrill_webhook_urls="https://a/hook",
        s3_secret_access_key="s3-secret",
        queue_name="q",
    )
    environment = settings.as_environment()
    assert environment["KAVE_MANDRILL_WEBHOOK_KEYS"] == "new-key,old-key"
    assert environment["KAVE_S3_SECRET_ACCESS_KEY"] == "s3-secret"
    assert "KAVE_DATABASE_URL" not in environment  # unset stays unset
    again = build(**{name[5:].lower(): value for name, value in environment.items()})
    assert again.as_environment() == environment
    assert again.webhook_keys() == ["new-key", "old-key"]
