"""``/api/v1/dead-letters``: listing, replaying (a real Celery message) and discarding."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from shared.contract import REPLAY_DEAD_LETTER_TASK
from shared.models import DeadLetter, Delivery
from shared.settings import Settings
from tests.api.conftest import T0, Rows, minutes

DEAD_LETTERS = "/api/v1/dead-letters"


def queued(redis_client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """The Celery messages waiting in the (unconsumed) queue of the test's app."""
    return [json.loads(raw) for raw in redis_client.lrange(settings.queue_name, 0, -1)]  # type: ignore[union-attr]


def stored(engine: Engine, dead_letter_id: int) -> DeadLetter:
    with Session(engine) as session:
        return session.scalars(select(DeadLetter).where(DeadLetter.id == dead_letter_id)).one()


def test_list_filter_and_read(client: TestClient, auth: dict[str, str], rows: Rows) -> None:
    delivery = rows.delivery()
    first = rows.dead_letter(delivery, event_index=0, first_seen_at=T0)
    whole = rows.dead_letter(
        delivery, event_index=None, first_seen_at=T0 + minutes(1), error_class="BatchError"
    )
    done = rows.dead_letter(status="replayed", first_seen_at=T0 + minutes(2))

    body = client.get(DEAD_LETTERS, headers=auth).json()
    assert [item["id"] for item in body["items"]] == [done.id, whole.id, first.id]
    assert "traceback" not in body["items"][0]
    assert body["items"][1]["event_index"] is None

    def ids(**params: str) -> list[int]:
        items = client.get(DEAD_LETTERS, headers=auth, params=params).json()["items"]
        return [item["id"] for item in items]

    assert ids(status="open") == [whole.id, first.id]
    assert ids(error_class="BatchError") == [whole.id]
    assert ids(delivery_id=delivery.id) == [whole.id, first.id]
    assert ids(kind="inbound", status="replayed") == [done.id]

    detail = client.get(f"{DEAD_LETTERS}/{first.id}", headers=auth).json()
    assert detail["traceback"].startswith("Traceback")
    assert detail["message"] == "raw_msg is missing"
    assert client.get(f"{DEAD_LETTERS}/999", headers=auth).status_code == 404


def test_replay_queues_the_replay_task_with_the_id_only(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    *,
    redis_client: redis.Redis,
    api_settings: Settings,
    clean_db: Engine,
) -> None:
    dead_letter = rows.dead_letter()
    response = client.post(f"{DEAD_LETTERS}/{dead_letter.id}/replay", headers=auth)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["dead_letter_id"] == dead_letter.id
    (message,) = queued(redis_client, api_settings)
    assert message["headers"]["task"] == REPLAY_DEAD_LETTER_TASK
    assert message["headers"]["id"] == body["task_id"]
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([], {"dead_letter_id": dead_letter.id})
    assert message["headers"]["request_id"] == response.headers["X-Request-ID"]
    # The worker marks it replayed once the replay succeeded; the API does not guess.
    assert stored(clean_db, dead_letter.id).status == "open"


def test_only_open_dead_letters_are_replayed_or_discarded(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    redis_client: redis.Redis,
    api_settings: Settings,
) -> None:
    for status in ("replayed", "discarded"):
        dead_letter = rows.dead_letter(status=status)
        for action in ("replay", "discard"):
            response = client.post(f"{DEAD_LETTERS}/{dead_letter.id}/{action}", headers=auth)
            assert response.status_code == 409
            assert f"is {status}, not open" in response.json()["message"]
    for action in ("replay", "discard"):
        assert client.post(f"{DEAD_LETTERS}/999/{action}", headers=auth).status_code == 404
    assert queued(redis_client, api_settings) == []


def test_discard_marks_it_resolved_once(
    client: TestClient, auth: dict[str, str], rows: Rows, clean_db: Engine
) -> None:
    dead_letter = rows.dead_letter()
    response = client.post(f"{DEAD_LETTERS}/{dead_letter.id}/discard", headers=auth)
    assert response.status_code == 200
    assert response.json()["status"] == "discarded"
    assert response.json()["resolved_at"] is not None
    row = stored(clean_db, dead_letter.id)
    assert row.status == "discarded"
    assert row.resolved_at is not None
    again = client.post(f"{DEAD_LETTERS}/{dead_letter.id}/discard", headers=auth)
    assert again.status_code == 409


def test_a_dead_letter_of_an_erased_or_purged_delivery_is_not_replayed(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    *,
    redis_client: redis.Redis,
    api_settings: Settings,
    clean_db: Engine,
) -> None:
    erased = rows.dead_letter(rows.delivery())
    purged = rows.dead_letter(rows.delivery())
    handoff = rows.dead_letter(erased_delivery := rows.delivery(), kind="dispatch", event_index=-7)
    with Session(clean_db) as session, session.begin():
        for dead_letter, reason in ((erased, "erasure"), (purged, "retention")):
            session.execute(
                update(Delivery)
                .where(Delivery.id == dead_letter.delivery_id)
                .values(archive_removed_at=func.now(), archive_removed_reason=reason)
            )
        session.execute(
            update(Delivery)
            .where(Delivery.id == erased_delivery.id)
            .values(archive_removed_at=func.now(), archive_removed_reason="erasure")
        )

    response = client.post(f"{DEAD_LETTERS}/{erased.id}/replay", headers=auth)
    assert response.status_code == 409
    assert response.json()["status"] == "error"
    message = response.json()["message"]
    assert f"delivery {erased.delivery_id} was erased on request" in message
    assert "cannot be replayed" in message
    response = client.post(f"{DEAD_LETTERS}/{purged.id}/replay", headers=auth)
    assert response.status_code == 409
    assert "removed by the retention policy" in response.json()["message"]
    assert queued(redis_client, api_settings) == []
    assert stored(clean_db, erased.id).status == "open"  # refused, not changed
    # A hand-off's dead letter replays a dispatch of a stored email, not the archive.
    assert client.post(f"{DEAD_LETTERS}/{handoff.id}/replay", headers=auth).status_code == 202
