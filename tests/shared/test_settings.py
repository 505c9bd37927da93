"""Settings fail fast, with a message that names what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.secret_strength import url_password
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


# --- production refuses weak secrets ---------------------------------------------------

STRONG = "Vq7xK2mZ9pL4sT8wN3bR6yH1cJ5dF0gA"  # 32 characters, as token_urlsafe would give
STRONG_PRODUCTION: dict[str, object] = {
    "env": "production",
    "database_url": f"postgresql+psycopg://kave:{STRONG}@postgres:5432/kave",
    "redis_url": f"redis://:{STRONG}@redis:6379/0",
    "mandrill_webhook_urls": "https://mail.example.com/api/v1/webhooks/mailchimp",
    "mandrill_webhook_keys": "k",  # Mandrill's choice, not ours: only required
    "object_store": "s3",
    "s3_bucket": "kave",
    "s3_access_key_id": "kave",
    "s3_secret_access_key": STRONG[::-1],
    "flower_basic_auth": f"ops:{STRONG[8:]}{STRONG[:8]}",
    "jwt_secret_key": STRONG,
}


def production(**overrides: object) -> dict[str, object]:
    return {**STRONG_PRODUCTION, **overrides}


def test_production_accepts_strong_secrets() -> None:
    settings = build(**production())
    assert settings.env == "production"
    assert settings.jwt_key() == STRONG


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"database_url": "postgresql://kave:change-me@db/kave"}, "KAVE_DATABASE_URL"),
        ({"database_url": "postgresql+psycopg://kave:postgres@db/kave"}, "KAVE_DATABASE_URL"),
        ({"database_url": "postgresql://kave:S3cret-ish@db/kave"}, "KAVE_DATABASE_URL"),
        ({"redis_url": "redis://:change-me@redis:6379/0"}, "KAVE_REDIS_URL"),
        ({"redis_url": "redis://:Password@redis:6379/0"}, "KAVE_REDIS_URL"),
        ({"redis_url": "redis://redis:6379/0"}, "KAVE_REDIS_URL has no password"),
        ({"redis_url": "redis://:@redis:6379/0"}, "KAVE_REDIS_URL's password is empty"),
        ({"s3_secret_access_key": "minioadmin"}, "KAVE_S3_SECRET_ACCESS_KEY"),
        ({"s3_secret_access_key": "change-me-too"}, "KAVE_S3_SECRET_ACCESS_KEY"),
        ({"s3_access_key_id": "minioadmin"}, "KAVE_S3_ACCESS_KEY_ID"),
        ({"s3_access_key_id": None}, "go together"),
        ({"s3_secret_access_key": None}, "go together"),
        ({"flower_basic_auth": "admin:change-me"}, "FLOWER_BASIC_AUTH"),
        ({"flower_basic_auth": "admin:admin"}, "FLOWER_BASIC_AUTH"),
        ({"flower_basic_auth": f"ops:{STRONG},old:test"}, "FLOWER_BASIC_AUTH's password (entry 2)"),
        ({"flower_basic_auth": STRONG}, "not user:password"),
        ({"jwt_secret_key": "a" * 32}, "KAVE_JWT_SECRET_KEY has too few different characters"),
        ({"jwt_secret_key": "change-me-change-me-change-me-12"}, "KAVE_JWT_SECRET_KEY"),
        ({"jwt_secret_key": STRONG[:31]}, "KAVE_JWT_SECRET_KEY is too short"),
        ({"jwt_secret_key": None}, "KAVE_JWT_SECRET_KEY is empty"),
        ({"jwt_secret_key": ""}, "KAVE_JWT_SECRET_KEY is empty"),
    ],
)
def test_production_refuses_each_weak_secret_by_name(
    overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        build(**production(**overrides))
    message = str(caught.value)
    assert named in message
    assert "secrets.token_urlsafe" in message  # says what to do
    for value in overrides.values():  # ... and never what it was given
        if isinstance(value, str):
            given = url_password(value) if "://" in value else value.rpartition(":")[2]
            for secret in (value, given or ""):
                assert len(secret) < 6 or secret not in message


def test_production_lists_every_weak_secret_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        build(
            **production(
                database_url="postgresql://kave:change-me@db/kave",
                redis_url="redis://redis:6379/0",
                s3_secret_access_key="change-me",
                flower_basic_auth="admin:change-me",
                jwt_secret_key="x" * 40,
            )
        )
    message = str(caught.value)
    for name in (
        "KAVE_DATABASE_URL",
        "KAVE_REDIS_URL",
        "KAVE_S3_SECRET_ACCESS_KEY",
        "FLOWER_BASIC_AUTH",
        "KAVE_JWT_SECRET_KEY",
    ):
        assert name in message
    assert "change-me" not in message
    assert "x" * 40 not in message


def test_a_redis_socket_needs_no_password_but_a_given_one_is_checked() -> None:
    build(**production(redis_url="unix:///run/redis/redis.sock?db=0"))
    with pytest.raises(ValidationError, match="KAVE_REDIS_URL's password is a placeholder"):
        build(**production(redis_url="unix://:change-me@/run/redis/redis.sock?db=0"))


def test_a_database_url_without_password_is_left_to_postgresql() -> None:
    # pg_hba.conf may use .pgpass, PGPASSWORD, a client certificate or peer auth.
    build(**production(database_url="postgresql://kave@db/kave"))


def test_s3_without_keys_uses_the_aws_default_credentials() -> None:
    build(**production(s3_access_key_id=None, s3_secret_access_key=None))


def test_flower_reads_flowers_own_variable_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flower uses FLOWER_BASIC_AUTH: that is the password production must check.
    monkeypatch.setenv("KAVE_FLOWER_BASIC_AUTH", f"ops:{STRONG}")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:change-me")
    values = production()
    del values["flower_basic_auth"]
    with pytest.raises(ValidationError, match="FLOWER_BASIC_AUTH's password"):
        build(**values)
    monkeypatch.delenv("FLOWER_BASIC_AUTH")
    assert build(**values).flower_basic_auth is not None


def test_a_validation_error_never_prints_the_values_it_was_given() -> None:
    with pytest.raises(ValidationError) as caught:
        build(**production(jwt_secret_key="Vq7xK2mZ9pL4sT8wN3bR6yH1cJ5dF0g"))  # 31 chars
    assert "Vq7xK2mZ" not in str(caught.value)
    assert "input_value" not in str(caught.value)


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_and_test_accept_anything(env: str) -> None:
    settings = build(
        env=env,
        database_url="postgresql://kave:change-me@db/kave",
        redis_url="redis://redis:6379/0",
        flower_basic_auth="admin:admin",
        jwt_secret_key="dev",
    )
    assert settings.jwt_key() == "dev"
