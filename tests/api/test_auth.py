"""Users, passwords and tokens over the real app and database: who gets in and who not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwt
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from api.auth import (
    MAX_PASSWORD_BYTES,
    PasswordTooLongError,
    create_access_token,
    hash_password,
    verify_password,
)
from shared.models import User
from shared.settings import Settings
from tests.api.conftest import PASSWORD, get_token

EMAILS = "/api/v1/emails"
TOKEN = "/api/v1/auth/token"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user: User, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": str(user.id), "iat": now, "exp": now + 600, **overrides}


def _assert_refused(client: TestClient, token: str, expected: str) -> None:
    response = client.get(EMAILS, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["status"] == "error"
    assert body["errors"] == []
    assert expected in body["message"]


# --- passwords ----------------------------------------------------------------------


def test_password_hashes_verify_only_the_right_password() -> None:
    stored = hash_password("s3cret-enough-password", rounds=4)
    assert stored.startswith("$2b$04$")
    assert verify_password("s3cret-enough-password", stored)
    assert not verify_password("s3cret-enough-passwore", stored)
    assert not verify_password("s3cret-enough-password", None)
    assert not verify_password("s3cret-enough-password", "not a bcrypt hash")


def test_passwords_over_72_bytes_are_refused_not_truncated() -> None:
    limit = "é" * (MAX_PASSWORD_BYTES // 2)  # 72 bytes in UTF-8, 36 characters
    stored = hash_password(limit, rounds=4)
    assert verify_password(limit, stored)
    with pytest.raises(PasswordTooLongError, match="74"):
        hash_password(limit + "é", rounds=4)
    # bcrypt would ignore the 73rd byte; we never let such a password match.
    assert not verify_password(limit + "x", stored)


# --- the token endpoint -------------------------------------------------------------


def test_token_for_the_right_password_opens_the_api(
    client: TestClient, make_user: Callable[..., User], api_settings: Settings
) -> None:
    user = make_user()
    response = client.post(TOKEN, data={"username": "ops", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == api_settings.access_token_lifetime_seconds
    claims = jwt.get_unverified_claims(body["access_token"])
    assert claims["sub"] == str(user.id)
    assert claims["exp"] - claims["iat"] == api_settings.access_token_lifetime_seconds
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    answer = client.get(EMAILS, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("username", "password"), [("ops", "wrong password!"), ("nobody", PASSWORD)]
)
def test_wrong_password_or_unknown_user_is_401_with_one_message(
    client: TestClient, make_user: Callable[..., User], username: str, password: str
) -> None:
    make_user()
    response = client.post(TOKEN, data={"username": username, "password": password})
    assert response.status_code == 401
    # The same answer for both, so it does not tell which user names exist.
    assert response.json()["message"] == "wrong user name or password"


def test_disabled_user_gets_no_token(client: TestClient, make_user: Callable[..., User]) -> None:
    make_user(disabled=True)
    response = client.post(TOKEN, data={"username": "ops", "password": PASSWORD})
    assert response.status_code == 401
    assert "disabled" in response.json()["message"]


def test_over_long_password_is_422_naming_the_field(
    client: TestClient, make_user: Callable[..., User]
) -> None:
    make_user()
    response = client.post(TOKEN, data={"username": "ops", "password": "p" * 73})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "body.password"
    assert "72 bytes" in body["errors"][0]["message"]


def test_password_of_exactly_72_bytes_works(
    client: TestClient, make_user: Callable[..., User]
) -> None:
    password = "ü" * 36  # 72 bytes
    make_user(password=password)
    response = client.post(TOKEN, data={"username": "ops", "password": password})
    assert response.status_code == 200


def test_missing_form_fields_are_422_naming_them(client: TestClient) -> None:
    response = client.post(TOKEN, data={"username": "ops"})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["body.password"]


# --- tokens the API refuses ---------------------------------------------------------


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user()


def test_no_token_is_401(client: TestClient) -> None:
    response = client.get(EMAILS)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "missing bearer token" in response.json()["message"]


def test_not_a_bearer_token_is_401(client: TestClient, user: User) -> None:
    token = get_token(client)
    response = client.get(EMAILS, headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401


def test_expired_token_is_401(client: TestClient, api_settings: Settings, user: User) -> None:
    expired = create_access_token(
        user.id, key=api_settings.jwt_key(), lifetime_seconds=60, now=time.time() - 61
    )
    _assert_refused(client, expired.token, "expired")
    # The same token, still fresh, is accepted: the test above fails only on expiry.
    fresh = create_access_token(user.id, key=api_settings.jwt_key(), lifetime_seconds=60)
    assert client.get(EMAILS, headers={"Authorization": f"Bearer {fresh.token}"}).status_code == 200


def test_tampered_token_is_401(
    client: TestClient, make_user: Callable[..., User], user: User
) -> None:
    other = make_user("other")
    header, _payload, signature = get_token(client).split(".")
    forged = ".".join([header, _b64(_claims(other)), signature])
    _assert_refused(client, forged, "Signature verification failed")


def test_token_signed_with_another_key_is_401(client: TestClient, user: User) -> None:
    token = jwt.encode(_claims(user), "another-key-of-sufficient-length-0123456789", "HS256")
    _assert_refused(client, token, "Signature verification failed")


def test_alg_none_token_is_401(client: TestClient, user: User) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."
    _assert_refused(client, unsigned, "alg")


def test_rs256_token_is_401(client: TestClient, user: User) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    token = jwt.encode(_claims(user), pem.decode(), algorithm="RS256")
    _assert_refused(client, token, "alg")


def test_hs256_token_keyed_with_a_public_key_is_401(client: TestClient, user: User) -> None:
    # The classic HS/RS confusion: HMAC keyed with a published RSA public key, hoping the
    # server verifies with "its key" whatever the header says.
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims(user))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    _assert_refused(client, token, "Signature verification failed")


@pytest.mark.parametrize("missing", ["exp", "sub", "iat"])
def test_token_without_a_required_claim_is_401(
    client: TestClient, api_settings: Settings, user: User, missing: str
) -> None:
    claims = _claims(user)
    del claims[missing]
    _assert_refused(client, jwt.encode(claims, api_settings.jwt_key(), "HS256"), missing)


def test_token_of_a_user_that_no_longer_exists_is_401(
    client: TestClient, api_settings: Settings, user: User
) -> None:
    token = jwt.encode(_claims(user, sub=str(user.id + 1000)), api_settings.jwt_key(), "HS256")
    _assert_refused(client, token, "no longer exists")


def test_disabling_a_user_revokes_its_tokens_at_once(
    client: TestClient, clean_db: Engine, user: User
) -> None:
    headers = {"Authorization": f"Bearer {get_token(client)}"}
    assert client.get(EMAILS, headers=headers).status_code == 200
    with Session(clean_db) as session:
        session.execute(update(User).where(User.id == user.id).values(disabled=True))
        session.commit()
    response = client.get(EMAILS, headers=headers)
    assert response.status_code == 401
    assert "disabled" in response.json()["message"]
