"""The queue contract: the only agreement between the receiver and the workers.

The receiver never puts the webhook body in a task message. It stores the body first
(in Redis for ordinary sizes, in the object store above the claim-check threshold) and
enqueues a small, versioned :class:`Envelope` that points at it. Task messages therefore
stay a few hundred bytes whatever the email size, and Flower and logs only ever show
ids, sizes and digests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

PROCESS_DELIVERY_TASK = "kave.delivery.process"
# kwargs: {"dead_letter_id": int}. Replays one dead letter from the delivery archive.
REPLAY_DEAD_LETTER_TASK = "kave.dead_letter.replay"
# No arguments. Re-enqueues deliveries recorded, or only accepted, but never finished.
RECONCILE_TASK = "kave.deliveries.reconcile"
# No arguments. Deletes what the retention policy no longer keeps (kave purge).
PURGE_TASK = "kave.retention.purge"
# kwargs: {"dispatch_id": int}. One attempt at handing an email to its route's handler.
DISPATCH_TASK = "kave.dispatch.publish"
# No arguments. Publishes due dispatches (lost publishes, expired leases).
DISPATCH_SWEEP_TASK = "kave.dispatch.sweep"
# Platform handler tasks (the platform's own workers) are named with this prefix; their
# kwargs are {"email_id", "dispatch_id", "idempotency_key", "route"}, nothing else.
HANDLER_TASK_PREFIX = "kave.handlers."
ENVELOPE_VERSION = 1

PayloadStore = Literal["redis", "object"]


def payload_redis_key(delivery_id: str) -> str:
    """Where the receiver keeps an ordinary-sized body until a worker archives it."""
    return f"kave:payload:{delivery_id}"


def archive_object_key(body_sha256: str) -> str:
    """Content-addressed key of a raw webhook body in the object store.

    The receiver writes claim-checked bodies here directly and workers archive every
    other body here, so each distinct body is stored exactly once.
    """
    return f"deliveries/{body_sha256[:2]}/{body_sha256}"


# kwargs: {"sha256": str}. Converts the attachments of those bytes to text (worker/text/).
TEXT_CONVERT_TASK = "kave.text.convert"
# No arguments. Queues the attachments still pending (a lost message, a killed worker).
TEXT_SWEEP_TASK = "kave.text.sweep"
TEXT_PREFIX = "text/"


def text_object_key(sha256: str) -> str:
    """Content-addressed key of an attachment's text (Markdown): one object per distinct
    attachment content, whatever the number of rows naming it."""
    return f"{TEXT_PREFIX}{sha256}.md"


def attachment_text_url(
    attachment_id: int, text_status: str | None, scan_status: str | None
) -> str | None:
    """Where the API serves an attachment's text (``GET /api/v1/attachments/{id}/text``,
    relative to the API's base URL), once it is ``ready``; None before, and for a
    quarantined attachment (the API refuses its text, 409, as it refuses its bytes).
    The one rule for the email view, conversations, the live feed and the hand-off."""
    if text_status != "ready" or scan_status == "quarantined":
        return None
    return f"/api/v1/attachments/{attachment_id}/text"


def text_key_sha256(key: str) -> str | None:
    """The sha256 a text key names, or None for any other key."""
    if key.startswith(TEXT_PREFIX) and key.endswith(".md"):
        return key[len(TEXT_PREFIX) : -len(".md")]
    return None


class EnvelopeError(ValueError):
    """A task message that does not follow this contract."""


@dataclass(frozen=True, slots=True)
class Envelope:
    delivery_id: str
    received_at: str  # ISO 8601, UTC
    body_sha256: str
    body_size: int
    payload_store: PayloadStore
    payload_key: str
    request_id: str
    version: int = ENVELOPE_VERSION

    def to_message(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Envelope:
        version = data.get("version")
        if version != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {version!r}")
        try:
            envelope = cls(**data)
        except TypeError as exc:
            raise EnvelopeError(f"malformed envelope: {exc}") from exc
        if envelope.payload_store not in ("redis", "object"):
            raise EnvelopeError(f"unknown payload store {envelope.payload_store!r}")
        return envelope

    def summary(self) -> str:
        """What Flower and logs show for the task: never the payload."""
        return f"delivery_id={self.delivery_id} size={self.body_size}"
