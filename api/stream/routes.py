"""``GET /api/v1/stream``: Server-Sent Events of ``email.received`` and
``email.text_ready``, resumable."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.access.mailboxes import visible_emails
from api.access.policies import MailReader, read_mail
from api.access.principal import Principal, still_valid
from api.openapi import API_ERRORS, error_responses
from api.params import text_filter
from api.stream import feed
from api.stream.feed import BadEventIdError, Position
from api.stream.slots import StreamSlots
from shared.web.errors import ServiceUnavailableError, TooManyRequestsError

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/stream",
    tags=["stream"],
    dependencies=[Depends(read_mail)],
    responses=error_responses(*API_ERRORS),
)

# How often a running stream renews its slot and checks its caller is still allowed.
RECHECK_SECONDS = 10.0
RETRY_MS = 2000  # what EventSource clients wait before reconnecting


def _resume(header: str | None, query: str | None) -> Position | None:
    value = header or query
    if not value:
        return None
    try:
        return Position.parse(value)
    except BadEventIdError as exc:
        raise RequestValidationError(
            [{"loc": ("header", "last-event-id"), "msg": str(exc)}]
        ) from None


@router.get(
    "",
    summary="Follow new emails (Server-Sent Events)",
    description=(
        "A `text/event-stream` of `email.received` events, one per stored email, and "
        "`email.text_ready` events, one when an email's attachments that waited for their "
        "text all have it final (`ready`, `skipped:<reason>` or `failed`; with each "
        "attachment's `text_status` and `text_url`), in the order of the transactions "
        "that wrote them, each with an `id`. `email.received` says `awaits_text`: whether "
        "an `email.text_ready` of that email follows. Reconnect with "
        "`Last-Event-ID` (EventSource does it by itself; or `?last_event_id=`) to go on "
        "exactly after the last event seen: nothing missed, nothing repeated. Without it "
        "the stream starts with the emails stored from now on; its first event, "
        "`stream.ready`, carries the starting id. Idle streams get a heartbeat comment. "
        "`mailbox` (envelope recipient) and `mailbox_hash` narrow both kinds, and a key "
        "limited to mailboxes sees only theirs. Each user or key "
        "may hold `KAVE_STREAMS_PER_CALLER` streams open (then 429)."
    ),
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(429)},
)
async def stream(  # noqa: PLR0917 - FastAPI reads the parameters
    request: Request,
    principal: MailReader,
    mailbox: Annotated[str | None, text_filter("Envelope recipient.")] = None,
    mailbox_hash: Annotated[str | None, text_filter("Plus-address tag.", 256)] = None,
    last_event_id: Annotated[
        str | None, Query(max_length=64, description="As the Last-Event-ID header.")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    state = request.app.state
    settings = state.settings
    resume = _resume(last_event_id_header, last_event_id)
    conditions = feed.mailbox_conditions(visible_emails(principal), mailbox, mailbox_hash)

    def read(work: Any) -> Any:
        def run() -> Any:
            with state.session_factory() as session:
                return work(session)

        return anyio.to_thread.run_sync(run)

    position: Position = resume or await read(feed.start)
    slots: StreamSlots = state.stream_slots
    try:
        member = await slots.claim(principal.bucket)
    except Exception as exc:  # Redis down: refuse rather than stream uncounted
        log.error("stream.slot_unavailable", error_type=type(exc).__name__)
        raise ServiceUnavailableError("the stream limiter (Redis) is unreachable") from None
    if member is None:
        raise TooManyRequestsError(
            f"this caller already has {slots.limit} streams open (KAVE_STREAMS_PER_CALLER); "
            "close one or wait for it to end",
            retry_after=RETRY_MS // 1000,
        )
    log.info("stream.opened", actor=principal.actor, resumed=resume is not None)
    opened = _Stream(
        read, slots, principal, member, position, conditions, settings.stream_poll_seconds
    )
    return EventSourceResponse(
        opened.events(),
        ping=settings.stream_heartbeat_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@dataclass
class _Stream:
    """One open stream: where it is, what it reads, and its slot."""

    read: Any
    slots: StreamSlots
    principal: Principal
    member: str
    position: Position
    conditions: list[Any]
    poll_seconds: float

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(
                data=json.dumps({"type": "stream.ready"}),
                event="stream.ready",
                id=self.position.event_id(),
                retry=RETRY_MS,
            )
            checked = time.monotonic()
            sent = self.position
            while True:
                batch = await self.read(
                    functools.partial(
                        feed.next_batch, after=self.position, conditions=self.conditions
                    )
                )
                for position, data in batch.events:
                    sent = position
                    yield ServerSentEvent(
                        data=json.dumps(data), event=data["type"], id=position.event_id()
                    )
                self.position = batch.reached
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    checked = time.monotonic()
                    if not await self._still_allowed():
                        return
                    if self.position != sent:
                        # An id without data: EventSource keeps it as Last-Event-ID and
                        # fires nothing, so a reconnection skips what was filtered out.
                        sent = self.position
                        yield ServerSentEvent(id=self.position.event_id())
                if len(batch.events) < feed.BATCH:
                    await anyio.sleep(self.poll_seconds)
        finally:
            with anyio.CancelScope(shield=True):
                await self.slots.release(self.principal.bucket, self.member)

    async def _still_allowed(self) -> bool:
        await self.slots.renew(self.principal.bucket, self.member)
        allowed: bool = await self.read(lambda session: still_valid(session, self.principal))
        if not allowed:
            log.info("stream.closed", actor=self.principal.actor, reason="access_revoked")
        return allowed
