"""The batch and the events that are not inbound mail: tracking, sync and unknown kinds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.ingest import columns
from worker.ingest.columns import storable_text
from worker.ingest.parsing.types import BatchError, ParsedEvent
from worker.ingest.parsing.values import json_type, opt_nonblank, sha256_text, timestamp


def parse_batch(mandrill_events: str) -> list[Any]:
    """Decode the ``mandrill_events`` form value into its list of events."""
    try:
        value = json.loads(mandrill_events)
    except json.JSONDecodeError as exc:
        # exc.msg and the position describe the syntax error without quoting the payload.
        raise BatchError(
            f"mandrill_events is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise BatchError(f"mandrill_events could not be decoded ({type(exc).__name__})") from exc
    if not isinstance(value, list):
        raise BatchError(f"mandrill_events is not a JSON array (got {json_type(value)})")
    return value


def event_kind(event: Any) -> str:
    """Name the kind of an event: "inbound", "open", ..., "sync.blacklist" or "unknown"."""
    if not isinstance(event, dict):
        return "unknown"
    if "event" in event:
        # Message events (and inbound) say what they are; anything else is kept as it is, so
        # new Mandrill kinds are stored instead of rejected.
        return _kind_text(event["event"]) or "unknown"
    # Sync events have no "event" key but a "type" (blacklist / whitelist).
    sync_type = _kind_text(event.get("type"))
    return f"sync.{sync_type}"[: columns.EVENT_KIND_CHARS] if sync_type else "unknown"


def parse_event(event: Any) -> ParsedEvent:
    """Parse a non-inbound event; never raises for any JSON value."""
    kind = event_kind(event)
    payload: dict[str, Any] = event if isinstance(event, dict) else {"value": event}
    mandrill_id: str | None = None
    recipient: str | None = None
    if kind.startswith("sync."):
        recipient = _sync_recipient(payload)
    else:
        msg = payload.get("msg")
        if isinstance(msg, dict):
            mandrill_id = opt_nonblank(msg.get("_id"))
            recipient = opt_nonblank(msg.get("email"))
    return ParsedEvent(
        kind=kind,
        occurred_at=timestamp(payload.get("ts")),
        mandrill_id=mandrill_id,
        recipient=recipient,
        payload=payload,
        dedup_key=_event_digest(event),
    )


def _kind_text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return storable_text(value).strip()[: columns.EVENT_KIND_CHARS] or None


def _sync_recipient(event: Mapping[str, Any]) -> str | None:
    # Blacklist sync events carry a "reject", whitelist ones an "entry".
    for key in ("reject", "entry"):
        value = event.get(key)
        if isinstance(value, dict):
            email = opt_nonblank(value.get("email"))
            if email is not None:
                return email
    return None


def _event_digest(event: Any) -> str:
    try:
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        # Not reachable from json.loads output (keys are always strings); kept so that
        # parse_event never raises, whatever it is handed.
        canonical = repr(event)
    return sha256_text(canonical)
