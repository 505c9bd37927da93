"""``/api/v1/deliveries``: every webhook POST the receiver accepted, and what became of it."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from api.access.policies import read_operations
from api.deliveries import queries
from api.deliveries.queries import DeliveryFilters
from api.deliveries.schemas import (
    DeliveryDetail,
    DeliveryEventOut,
    DeliveryPage,
    DeliverySummary,
    OutcomeCounts,
)
from api.deps import SessionDep
from api.openapi import API_ERRORS, error_responses
from api.pagination import DEFAULT_PAGE_SIZE, CursorParam, PageSize, parse_cursor
from api.params import Instant, since_filter, until_filter
from shared.models import Delivery
from shared.queries import deliveries as shared_deliveries
from shared.web.errors import NotFoundError

router = APIRouter(
    prefix="/deliveries",
    tags=["deliveries"],
    dependencies=[Depends(read_operations)],
    responses=error_responses(*API_ERRORS),
)

_SUMMARY_FIELDS = set(DeliverySummary.model_fields) - {"outcomes"}
_DETAIL_FIELDS = set(DeliveryDetail.model_fields) - {"outcomes", "events"}


def _outcomes(counts: dict[str, int]) -> OutcomeCounts:
    return OutcomeCounts.model_validate(counts)


@router.get(
    "",
    summary="List deliveries",
    description=(
        "One item per webhook POST answered 200, newest first: its status (`received`: "
        "queued, `processed`, `failed`), its number of events, and how many of them were "
        "stored, duplicates or failed (a failed event has a dead letter)."
    ),
    response_model=DeliveryPage,
)
def list_deliveries(
    session: SessionDep,
    *,
    status: Annotated[
        Literal["received", "processed", "failed"] | None, Query(description="Only this status.")
    ] = None,
    since: Annotated[Instant | None, since_filter("deliveries received")] = None,
    until: Annotated[Instant | None, until_filter("deliveries received")] = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> DeliveryPage:
    filters = DeliveryFilters(status=status, since=since, until=until)
    page, counts = queries.list_deliveries(
        session, filters, cursor=parse_cursor(cursor, str), limit=limit
    )
    return DeliveryPage(
        items=[_summary(delivery, counts[delivery.id]) for delivery in page.rows],
        next_cursor=page.next_cursor,
    )


def _summary(delivery: Delivery, counts: dict[str, int]) -> DeliverySummary:
    values = {name: getattr(delivery, name) for name in _SUMMARY_FIELDS}
    return DeliverySummary.model_validate({**values, "outcomes": _outcomes(counts)})


@router.get(
    "/{delivery_id}",
    summary="Read a delivery",
    description=(
        "A delivery with its counts by outcome and the outcome of each event of its batch, "
        "in batch order, with the email or event it produced."
    ),
    response_model=DeliveryDetail,
    responses=error_responses(404),
)
def get_delivery(
    delivery_id: Annotated[uuid.UUID, Path(description="The id the webhook answer carried.")],
    session: SessionDep,
) -> DeliveryDetail:
    delivery = shared_deliveries.get_delivery(session, str(delivery_id))
    if delivery is None:
        raise NotFoundError(f"no delivery {delivery_id}")
    counts = shared_deliveries.outcome_counts(session, [delivery.id])[delivery.id]
    values = {name: getattr(delivery, name) for name in _DETAIL_FIELDS}
    return DeliveryDetail.model_validate(
        {
            **values,
            "outcomes": _outcomes(counts),
            "events": [
                DeliveryEventOut.model_validate(event)
                for event in shared_deliveries.delivery_events(session, delivery.id)
            ],
        }
    )
