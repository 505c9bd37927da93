"""``/api/v1/dead-letters``: what could not be processed, and replaying or discarding it."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from api.access.policies import Operator, read_operations
from api.dead_letters import queries
from api.dead_letters.schemas import DeadLetterDetail, DeadLetterOut, DeadLetterPage, ReplayQueued
from api.deps import ProducerDep, RequestIdDep, SessionDep
from api.openapi import API_ERRORS, error_responses
from api.pagination import DEFAULT_PAGE_SIZE, CursorParam, PageSize, parse_cursor
from api.params import IdPath, text_filter
from shared.contract import REPLAY_DEAD_LETTER_TASK
from shared.lifecycle.erased import refusal
from shared.models import DeadLetter, DeadLetterStatus, Delivery
from shared.queries import dead_letters as shared_dead_letters
from shared.queries.dead_letters import DeadLetterFilters
from shared.web.errors import ConflictError, NotFoundError, ServiceUnavailableError

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/dead-letters",
    tags=["dead letters"],
    dependencies=[Depends(read_operations)],
    responses=error_responses(*API_ERRORS),
)


def _open_dead_letter(session: Session, dead_letter_id: int, action: str) -> DeadLetter:
    dead_letter = shared_dead_letters.get_dead_letter(session, dead_letter_id)
    if dead_letter is None:
        raise NotFoundError(f"no dead letter {dead_letter_id}")
    if dead_letter.status != DeadLetterStatus.OPEN:
        raise ConflictError(
            f"dead letter {dead_letter_id} is {dead_letter.status}, not open; "
            f"only open dead letters can be {action}"
        )
    return dead_letter


def _refuse_removed_archive(session: Session, dead_letter_id: int) -> None:
    """409 when the dead letter's delivery was erased or its archive removed (checked
    before the status: an erasure also discards its dead letters, and says why)."""
    dead_letter = shared_dead_letters.get_dead_letter(session, dead_letter_id)
    if dead_letter is None or (
        dead_letter.kind == "dispatch" and (dead_letter.event_index or 0) < 0
    ):
        return  # not found (404 below), or a hand-off's, which replays no archive
    delivery = session.get(Delivery, dead_letter.delivery_id)
    refused = refusal(delivery, "replayed") if delivery is not None else None
    if refused is not None:
        raise ConflictError(f"dead letter {dead_letter_id} cannot be replayed: {refused}")


@router.get(
    "",
    summary="List dead letters",
    description=(
        "Events (or whole deliveries, `event_index` null) that could not be processed, "
        "newest first, with the error class and message. Open ones wait for a fix and a "
        "replay, or a discard."
    ),
    response_model=DeadLetterPage,
)
def list_dead_letters(
    session: SessionDep,
    *,
    status: Annotated[
        Literal["open", "replayed", "discarded"] | None, Query(description="Only this status.")
    ] = None,
    kind: Annotated[str | None, text_filter("Event kind, e.g. inbound.", 64)] = None,
    error_class: Annotated[str | None, text_filter("Exception class name.", 128)] = None,
    delivery_id: Annotated[uuid.UUID | None, Query(description="Only this delivery's.")] = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> DeadLetterPage:
    filters = DeadLetterFilters(
        status=status,
        kind=kind,
        error_class=error_class,
        delivery_id=str(delivery_id) if delivery_id else None,
    )
    page = queries.list_dead_letters(
        session, filters, cursor=parse_cursor(cursor, int), limit=limit
    )
    return DeadLetterPage(
        items=[DeadLetterOut.model_validate(row) for row in page.rows],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{dead_letter_id}",
    summary="Read a dead letter",
    description="A dead letter with the traceback of its last failure.",
    response_model=DeadLetterDetail,
    responses=error_responses(404),
)
def get_dead_letter(dead_letter_id: IdPath, session: SessionDep) -> DeadLetterDetail:
    dead_letter = shared_dead_letters.get_dead_letter(session, dead_letter_id)
    if dead_letter is None:
        raise NotFoundError(f"no dead letter {dead_letter_id}")
    return DeadLetterDetail.model_validate(dead_letter)


@router.post(
    "/{dead_letter_id}/replay",
    status_code=202,
    summary="Replay a dead letter",
    description=(
        "Queues the event (or delivery) to be processed again from the delivery archive, "
        "after the cause was fixed. Safe to repeat: processing is idempotent, so nothing "
        "already stored is stored twice. The dead letter becomes `replayed` when the "
        "replay succeeds; if it fails again it stays open with the new error. A delivery "
        "that was erased (`kave erase`, `DELETE /emails/{id}`), or whose archive the "
        "retention policy removed, is refused with 409: nothing can bring it back."
    ),
    response_model=ReplayQueued,
    responses=error_responses(404, 409),
)
def replay_dead_letter(
    dead_letter_id: IdPath,
    session: SessionDep,
    producer: ProducerDep,
    operator: Operator,
    request_id: RequestIdDep,
) -> ReplayQueued:
    _refuse_removed_archive(session, dead_letter_id)
    _open_dead_letter(session, dead_letter_id, "replayed")
    try:
        result = producer.send_task(
            REPLAY_DEAD_LETTER_TASK,
            kwargs={"dead_letter_id": dead_letter_id},
            headers={"request_id": request_id},
            retry=False,
        )
    except Exception as exc:
        log.error(
            "dead_letter.replay_not_queued",
            dead_letter_id=dead_letter_id,
            error_type=type(exc).__name__,
        )
        raise ServiceUnavailableError(
            "the replay could not be queued (Redis unreachable); try again shortly"
        ) from None
    log.info(
        "dead_letter.replay_queued",
        dead_letter_id=dead_letter_id,
        actor=operator.actor,
        task=result.id,
    )
    return ReplayQueued(dead_letter_id=dead_letter_id, task_id=str(result.id))


@router.post(
    "/{dead_letter_id}/discard",
    summary="Discard a dead letter",
    description=(
        "Marks an open dead letter `discarded`: an operator decided the event needs no "
        "result. Nothing is deleted; the delivery archive still holds the event."
    ),
    response_model=DeadLetterOut,
    responses=error_responses(404, 409),
)
def discard_dead_letter(
    dead_letter_id: IdPath, session: SessionDep, operator: Operator
) -> DeadLetterOut:
    discarded = queries.discard_dead_letter(session, dead_letter_id)
    if discarded is None:
        _open_dead_letter(session, dead_letter_id, "discarded")  # raises 404 or 409
        raise ConflictError(f"dead letter {dead_letter_id} changed meanwhile; try again")
    log.info("dead_letter.discarded", dead_letter_id=dead_letter_id, actor=operator.actor)
    return DeadLetterOut.model_validate(discarded)
