"""Each rule of the secret strength check, on values people really put in config files."""

from __future__ import annotations

import secrets

import pytest

from shared.secret_strength import (
    PASSWORD_MIN_LENGTH,
    SIGNING_KEY_MIN_LENGTH,
    is_placeholder,
    is_unix_socket_url,
    min_distinct_characters,
    url_password,
    weakness,
)


def password_weakness(value: str | None) -> str | None:
    return weakness(value, min_length=PASSWORD_MIN_LENGTH)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_empty_is_refused(value: str | None) -> None:
    assert password_weakness(value) == "is empty"


@pytest.mark.parametrize(
    "value",
    [
        "change-me",
        "CHANGE-ME",
        "changeme",
        "Change_Me_Before_Production_2025",
        "change-me-too",
        "replace-me-with-a-real-key-please",
        "password",
        "Password",
        "P@ssw0rd-but-longer-than-16",
        "secret",
        "my-super-secret-key-for-the-api-2025",
        "admin",
        "minioadmin",
        "MinioAdmin",
        "postgres",
        "test",
        "example",
        "an-example-value-of-some-length",
        "xxxxxxxx",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "your-secret-here-0123456789",
        "YOUR_PASSWORD_GOES_HERE_9f8e7d",
        "<generated password>",
        "${POSTGRES_PASSWORD}",
        "qwertyuiop-asdfghjkl",
        "123456789012345678",
        "placeholder-value-f83jd92k",
        "insecure-dev-only-value-93jf8",
        "dummy-value-REDIS_PASSWORD",
    ],
)
def test_placeholders_are_refused_whatever_their_length_or_case(value: str) -> None:
    assert is_placeholder(value)
    assert password_weakness(value) == "is a placeholder (a well-known or example value)"


@pytest.mark.parametrize("length", [1, 8, PASSWORD_MIN_LENGTH - 1])
def test_short_values_are_refused(length: int) -> None:
    value = "k3Rf9Zq1Lm0Xv7Bw4Yt2"[:length]
    assert password_weakness(value) == f"is too short (at least {PASSWORD_MIN_LENGTH} characters)"
    assert password_weakness("k3Rf9Zq1Lm0Xv7Bw4Yt2"[:PASSWORD_MIN_LENGTH]) is None


def test_the_signing_key_needs_its_own_longer_minimum() -> None:
    key = "k3Rf9Zq1Lm0Xv7Bw4Yt2Hs8Dn5Gc6Pa1E"
    assert weakness(key[:31], min_length=SIGNING_KEY_MIN_LENGTH) == (
        "is too short (at least 32 characters)"
    )
    assert weakness(key[:32], min_length=SIGNING_KEY_MIN_LENGTH) is None


@pytest.mark.parametrize(
    ("value", "min_length"),
    [
        ("a" * 32, SIGNING_KEY_MIN_LENGTH),  # the finding: one letter, repeated
        ("Z" * 16, PASSWORD_MIN_LENGTH),
        ("abababababababababababababababab", SIGNING_KEY_MIN_LENGTH),
        ("aabbccdd" * 4, SIGNING_KEY_MIN_LENGTH),  # 4 distinct < 8
        ("10011010011101001110", PASSWORD_MIN_LENGTH),
        ("k9k9k9Zk9k9k9Zk9", PASSWORD_MIN_LENGTH),  # 3 distinct < 6
    ],
)
def test_too_few_distinct_characters_are_refused(value: str, min_length: int) -> None:
    needed = min_distinct_characters(min_length)
    assert len(set(value)) < needed
    assert weakness(value, min_length=min_length) == (
        f"has too few different characters (at least {needed})"
    )


def test_the_distinct_minimum_grows_with_the_length() -> None:
    assert min_distinct_characters(PASSWORD_MIN_LENGTH) == 6
    assert min_distinct_characters(SIGNING_KEY_MIN_LENGTH) == 8
    assert min_distinct_characters(4) == 6


@pytest.mark.parametrize(
    "value", ["kave-q1w9-kave-q1w9-", "Ab3$Xy7!Ab3$Xy7!Ab3$Xy7!", "k9Jd2Lk9Jd2L" * 3]
)
def test_a_repeated_pattern_is_refused(value: str) -> None:
    assert password_weakness(value) == "repeats a short pattern"


@pytest.mark.parametrize(
    "value",
    [
        "abcdefghijklmnopqrstuvwxyz",
        "ABCDEFGHijklmnop",
        "zyxwvutsrqponmlkji",
        "abcd1234efgh5678",
        "789abcdefghijklm0",
    ],
)
def test_a_simple_sequence_is_refused(value: str) -> None:
    assert password_weakness(value) == "is a simple sequence of characters"


@pytest.mark.parametrize(
    ("value", "min_length"),
    [
        (secrets.token_urlsafe(32), SIGNING_KEY_MIN_LENGTH),
        (secrets.token_urlsafe(48), SIGNING_KEY_MIN_LENGTH),
        (secrets.token_urlsafe(12), PASSWORD_MIN_LENGTH),
        ("v8Jq3kR0bC7nXz1LwT5yHs9MdA2pFe6G", SIGNING_KEY_MIN_LENGTH),
        ("correct horse battery staple", PASSWORD_MIN_LENGTH),
        ("9f86d081884c7d65", PASSWORD_MIN_LENGTH),  # 16 hex digits
    ],
    # Fixed ids: the generated values differ in each process, and pytest-xdist's workers
    # must collect the same test names.
    ids=["urlsafe-32", "urlsafe-48", "urlsafe-12", "letters-32", "passphrase", "hex-16"],
)
def test_random_values_pass(value: str, min_length: int) -> None:
    assert weakness(value, min_length=min_length) is None


def test_a_thousand_generated_values_all_pass() -> None:
    # What the docs tell operators to run: it must never be refused.
    for _ in range(1000):
        assert weakness(secrets.token_urlsafe(32), min_length=SIGNING_KEY_MIN_LENGTH) is None
        assert weakness(secrets.token_urlsafe(16), min_length=PASSWORD_MIN_LENGTH) is None


def test_reasons_never_quote_the_value() -> None:
    for value in ("change-me", "k3Rf9Zq", "a" * 40, "ab" * 20, "abcdefghijklmnopqrst"):
        reason = weakness(value, min_length=PASSWORD_MIN_LENGTH)
        assert reason is not None
        assert value not in reason


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://kave:change-me@db/kave", "change-me"),
        ("postgresql+psycopg://kave:s%40fe%2Fpw@postgres:5432/kave", "s@fe/pw"),
        ("redis://:change-me@redis:6379/0", "change-me"),
        ("rediss://default:Tq8vB2@redis.example:6380/0", "Tq8vB2"),
        ("redis://:@redis:6379/0", ""),
        ("redis://redis:6379/0", None),
        ("redis://change-me@redis:6379/0", None),  # a user name only
        ("postgresql://db/kave", None),
        ("unix:///run/redis/redis.sock?db=0", None),
    ],
)
def test_url_password_reads_the_password_part(url: str, password: str | None) -> None:
    assert url_password(url) == password


def test_unix_socket_urls_are_recognised() -> None:
    assert is_unix_socket_url("unix:///run/redis/redis.sock")
    assert is_unix_socket_url("redis+socket:///run/redis/redis.sock")
    assert not is_unix_socket_url("redis://redis:6379/0")
    assert not is_unix_socket_url("rediss://redis:6380/0")
