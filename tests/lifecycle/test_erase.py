"""Erasure through the real pipeline: rows first, then the objects no row names any more."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from kave.send import events_from_eml
from shared.contract import payload_redis_key
from shared.db import make_session_factory
from shared.lifecycle.erase import erase_rows
from shared.models import Attachment, Delivery, DeliveryEvent, Email, Erasure, Event
from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests.kave.support import kave_with_settings as kave
from tests.lifecycle.conftest import deliver
from tests.rows import add_stored_email

pytestmark = pytest.mark.usefixtures("worker", "clean")


def message(sender: str, to: str, *, attachment: bytes | None = None, body: str = "Hi") -> str:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"subject {uuid.uuid4().hex[:6]}"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@test.example>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename="shared.bin")  # fmt: skip
    return events_from_eml(msg.as_bytes())


def emails(engine: Engine) -> dict[str, Email]:
    with Session(engine) as session:
        return {e.from_address or "": e for e in session.scalars(select(Email))}


def attachment_keys(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Attachment.object_key)))


def test_shared_attachment_survives_the_first_erasure_and_goes_with_the_second(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    content = os.urandom(2048)
    digest = hashlib.sha256(content).hexdigest()
    key = f"attachments/{digest[:2]}/{digest}"
    first = deliver(
        receiver, engine, message("one@a.example", "in@kave.example", attachment=content)
    )
    deliver(receiver, engine, message("two@b.example", "in@kave.example", attachment=content))
    stored = emails(engine)
    one, two = stored["one@a.example"], stored["two@b.example"]
    assert attachment_keys(engine) == {key}
    with Session(engine) as session:
        first_archive = session.get(Delivery, first).archive_key  # type: ignore[union-attr]

    result = kave(["erase", "--email", str(one.id)], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "emails 1" in result.stdout
    assert "still named by other rows 1" in result.stdout
    assert set(emails(engine)) == {"two@b.example"}
    assert clean_store.get(key) == content  # the second email still needs it
    assert not clean_store.exists(one.raw_key)
    assert not clean_store.exists(first_archive)
    assert clean_store.exists(two.raw_key)
    with Session(engine) as session:
        delivery = session.get(Delivery, first)
        assert delivery is not None
        assert delivery.archive_removed_reason == "erasure"
        outcomes = session.scalars(
            select(DeliveryEvent.outcome).where(DeliveryEvent.delivery_id == first)
        ).all()
        assert outcomes == ["erased"]
    audit = kave(["audit"], settings)
    assert audit.returncode == 0, audit.stdout

    result = kave(["erase", "--email", str(two.id)], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert emails(engine) == {}
    assert not clean_store.exists(key)
    assert kave(["audit"], settings).returncode == 0

    missing = kave(["erase", "--email", str(two.id)], settings)
    assert missing.returncode == 1
    assert f"no email {two.id}" in missing.stderr


def text_columns(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            (row.table_name, row.column_name, row.data_type)
            for row in conn.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type IN "
                    "('text', 'character varying', 'jsonb', 'json', 'bytea', 'character')"
                )
            )
        ]


def rows_mentioning(engine: Engine, needle: str) -> dict[str, int]:
    found = {}
    columns = text_columns(engine)
    assert ("emails", "text_body", "text") in columns  # the scan sees the schema
    with engine.connect() as conn:
        for table, column, data_type in columns:
            if data_type == "bytea":
                condition = f"position(convert_to(:needle, 'UTF8') in \"{column}\") > 0"
            else:
                condition = f'strpos(lower("{column}"::text), :needle) > 0'
            query = f'SELECT count(*) FROM "{table}" WHERE {condition}'  # noqa: S608 - catalog names
            count = conn.execute(text(query), {"needle": needle}).scalar_one()
            if count:
                found[f"{table}.{column}"] = count
    return found


def objects_mentioning(store: S3ObjectStore, needle: str) -> list[str]:
    forms = {needle, quote_plus(needle), quote(needle), json.dumps(needle)[1:-1]}
    found = []
    for item in store.list_objects():
        data = store.get(item.key).lower()
        if any(form.lower().encode() in data for form in forms):
            found.append(item.key)
    return found


def test_erasing_an_address_leaves_no_byte_of_it(
    receiver: str,
    engine: Engine,
    settings: Settings,
    clean_store: S3ObjectStore,
    redis_client: redis.Redis,
) -> None:
    address = f"erase-{uuid.uuid4().hex[:8]}@example.org"
    deliver(receiver, engine, message(address, "in@kave.example", attachment=os.urandom(512)))
    deliver(receiver, engine, message("someone@else.example", f"Jane <{address}>"))
    deliver(
        receiver,
        engine,
        message("third@else.example", "in@kave.example", body=f"write to {address.upper()}"),
    )
    keep = deliver(receiver, engine, message("keep@else.example", "in@kave.example"))
    opened: list[dict[str, Any]] = json.loads(
        (settings_fixture_path("open.json")).read_text(encoding="utf-8")
    )
    opened[0]["msg"]["email"] = address
    deliver(receiver, engine, json.dumps(opened))
    # An event no parser accepts, alone in its batch: a dead letter whose content lives
    # only in the archive.
    broken = {"event": "inbound", "ts": int(time.time()), "msg": {"email": address}}
    dead = deliver(receiver, engine, json.dumps([broken]))
    with Session(engine) as session:
        assert session.scalars(
            select(DeliveryEvent.outcome).where(DeliveryEvent.delivery_id == dead)
        ).all() == ["failed"]
    # A body copy the receiver left in Redis (as after a worker_lost dead letter).
    redis_client.set(payload_redis_key(dead), f"mandrill_events=...{address}...")
    assert rows_mentioning(engine, address)  # the scan finds what is there
    assert objects_mentioning(clean_store, address)

    result = kave(["erase", "--address", address.upper()], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert address not in result.stdout + result.stderr

    assert rows_mentioning(engine, address) == {}
    assert objects_mentioning(clean_store, address) == []
    assert not redis_client.exists(payload_redis_key(dead))
    assert set(emails(engine)) == {"keep@else.example"}
    with Session(engine) as session:
        assert session.scalars(select(Event)).all() == []
        erasure = session.scalars(select(Erasure)).one()
        kept = session.scalars(select(Email)).one()
        assert session.get(Delivery, keep).archive_removed_at is None  # type: ignore[union-attr]
        assert session.get(Delivery, dead).archive_removed_reason == "erasure"  # type: ignore[union-attr]
    assert erasure.selector_kind == "address"
    assert erasure.selector_sha256 == hashlib.sha256(f"address:{address}".encode()).hexdigest()
    assert erasure.counts["emails"] == 3
    assert erasure.counts["events"] == 1
    assert erasure.objects_done_at is not None
    assert clean_store.exists(kept.raw_key)
    audit = kave(["audit"], settings)
    assert audit.returncode == 0, audit.stdout


def settings_fixture_path(name: str) -> Any:
    from tests.services import FIXTURES

    return FIXTURES / name


def test_a_rerun_finishes_an_erasure_that_crashed_after_its_rows(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    address = f"crash-{uuid.uuid4().hex[:8]}@example.org"
    deliver(receiver, engine, message(address, "in@kave.example", attachment=os.urandom(256)))
    # The rows go and the objects are queued; then the process "dies".
    done = erase_rows(make_session_factory(engine), clean_store, actor="test", address=address)
    assert done.counts["emails"] == 1
    audit = kave(["audit"], settings)
    assert audit.returncode == 1  # raw message, attachment and archive are orphans now
    assert objects_mentioning(clean_store, address)

    rerun = kave(["erase", "--address", address], settings)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "objects deleted 3" in rerun.stdout
    assert objects_mentioning(clean_store, address) == []
    assert kave(["audit"], settings).returncode == 0


def test_an_address_is_matched_whole(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    address = f"jane-{uuid.uuid4().hex[:6]}@example.org"
    deliver(receiver, engine, message(f"mary-{address}", "in@kave.example"))
    deliver(receiver, engine, message(f"{address[:-4]}.org.uk", "in@kave.example"))
    deliver(receiver, engine, message("x@y.example", "in@kave.example", body=f"To {address}."))
    result = kave(["erase", "--address", address], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(emails(engine)) == {f"mary-{address}", f"{address[:-4]}.org.uk"}


def test_an_address_only_in_a_forwarded_message_is_erased(
    engine: Engine, clean_store: S3ObjectStore
) -> None:
    # forwarded_text is cut from the body, but a forward in HTML renders it anew: the
    # erasure must search it as it searches reply_text.
    address = f"fwd-{uuid.uuid4().hex[:8]}@example.org"
    with Session(engine) as session, session.begin():
        email = add_stored_email(session)
        email.forwarded_text = f"From: Jane <{address}>\nSubject: the plan\n\nsee below"
    done = erase_rows(make_session_factory(engine), clean_store, actor="test", address=address)
    assert done.counts["emails"] == 1
    assert rows_mentioning(engine, address) == {}
