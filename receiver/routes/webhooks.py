"""The Mandrill webhook endpoint: verify, make durable, answer 200."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from receiver.deps import DeliveryQueueDep, RequestIdDep
from receiver.enqueue import EnqueueError
from receiver.errors import ServiceUnavailableError
from receiver.signature import VerifiedBatchDep

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

WEBHOOK_PATH = "/mailchimp"


class Accepted(BaseModel):
    status: str = "accepted"
    delivery_id: str | None


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The form has no mandrill_events field, or is not valid UTF-8."},
    401: {"description": "X-Mandrill-Signature is missing or does not match."},
    413: {"description": "The body is larger than KAVE_MAX_BODY_BYTES."},
    415: {"description": "The body is not application/x-www-form-urlencoded."},
    429: {"description": "Too many failed signature checks from this client; see Retry-After."},
    503: {"description": "The batch could not be made durable; Mandrill will retry it."},
}


@router.api_route(
    WEBHOOK_PATH,
    methods=["HEAD", "GET"],
    summary="Answer Mandrill's URL check",
    description="Mandrill sends an unsigned HEAD when a webhook or inbound route is saved.",
)
async def url_check() -> Response:
    return Response(status_code=200)


@router.post(
    WEBHOOK_PATH,
    summary="Receive a batch of Mandrill events",
    description=(
        "Verifies the signature, stores the raw batch durably and queues it for the "
        "workers. Answers 200 only once the batch is durable (Mandrill retries anything "
        "else). An empty batch (Mandrill's URL validation) is answered 200 and not queued."
    ),
    response_model=Accepted,
    responses=_ERRORS,
)
async def receive_batch(
    batch: VerifiedBatchDep, queue: DeliveryQueueDep, request_id: RequestIdDep
) -> Accepted:
    if batch.is_empty:
        return Accepted(delivery_id=None)
    try:
        envelope = await queue.enqueue(batch.body, request_id)
    except EnqueueError:
        raise ServiceUnavailableError(
            "the batch could not be queued (queue or object store unreachable); "
            "it was not accepted and Mandrill will retry it"
        ) from None
    return Accepted(delivery_id=envelope.delivery_id)
