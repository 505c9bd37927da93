"""The Mandrill webhook endpoint: verify, make durable, answer 200."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from receiver.enqueue import DeliveryQueue, EnqueueError
from receiver.signature import verified_batch
from shared.web.errors import ServiceUnavailableError
from shared.web.request_id import current_request_id
from shared.webhook import WEBHOOK_PATH

router = APIRouter(tags=["webhooks"])


class Accepted(BaseModel):
    status: str = "accepted"
    delivery_id: str | None


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The form has no mandrill_events field, is not valid UTF-8, or has "
        "more than KAVE_MAX_FORM_FIELDS fields."
    },
    401: {"description": "X-Mandrill-Signature is missing (the body is not read) or wrong."},
    413: {"description": "The body is larger than KAVE_MAX_BODY_BYTES."},
    415: {"description": "The body is not application/x-www-form-urlencoded."},
    429: {
        "description": "Too many refused webhook requests from this client; see Retry-After. "
        "A correctly signed batch is never refused."
    },
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
async def receive_batch(request: Request) -> Response:
    # The hottest route: one parameter and a response built here, so FastAPI neither
    # solves dependencies nor validates the answer per request (the gate and the queue
    # are the same objects the Annotated dependencies would give; `Accepted` documents it).
    batch = await verified_batch(request)
    if batch.is_empty:
        return _accepted(None)
    queue: DeliveryQueue = request.app.state.delivery_queue
    try:
        envelope = await queue.enqueue(batch.body, current_request_id())
    except EnqueueError:
        raise ServiceUnavailableError(
            "the batch could not be queued (queue or object store unreachable); "
            "it was not accepted and Mandrill will retry it"
        ) from None
    return _accepted(envelope.delivery_id)


def _accepted(delivery_id: str | None) -> Response:
    body = (
        b'{"status":"accepted","delivery_id":'
        + (f'"{delivery_id}"'.encode() if delivery_id else b"null")
        + b"}"
    )
    return Response(body, media_type="application/json")
