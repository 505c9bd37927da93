"""The Mandrill webhook endpoint: verify, make durable, answer 200.

The POST is a bare ASGI app on a Starlette ``Route``, not a FastAPI path operation: it is
the hottest route and needs nothing FastAPI adds per request (dependency solving, exit
stacks, a route-level exception wrapper, response validation), which cost ~13% of the
receiver's CPU per request. Errors still go through the app's exception handlers
(:func:`shared.web.errors.install_error_handlers`), and the receiver serves no OpenAPI
document, so nothing else changes. Its answers:

- 200 ``{"status": "accepted", "delivery_id": "<uuid>"}`` once the batch is durable; an
  empty batch (Mandrill's URL validation) is answered with ``"delivery_id": null`` and
  not queued;
- 400: the form has no ``mandrill_events`` field, is not valid UTF-8, or has more than
  ``KAVE_MAX_FORM_FIELDS`` fields;
- 401: ``X-Mandrill-Signature`` is missing (the body is not read) or wrong;
- 408: the body stopped arriving, or arrived too slowly (the connection is closed);
- 413: the body is larger than ``KAVE_MAX_BODY_BYTES``;
- 415: the body is not ``application/x-www-form-urlencoded``;
- 429: too many refused webhook requests from this client (see ``Retry-After``); a
  correctly signed batch is never refused for that. Also (before the body is read)
  when this client already has ``KAVE_RECEIVER_MAX_REQUESTS_PER_CLIENT`` in flight;
- 503: the batch could not be made durable, or the process already holds
  ``KAVE_RECEIVER_MAX_BUFFERED_BYTES`` of webhook bodies (``Retry-After``); Mandrill
  retries it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from receiver.enqueue import DeliveryQueue, EnqueueError
from receiver.in_flight import InFlight
from receiver.signature import verified_batch
from shared.web.errors import ServiceUnavailableError
from shared.web.request_id import current_request_id
from shared.webhook import WEBHOOK_PATH

router = APIRouter(tags=["webhooks"])


@router.api_route(
    WEBHOOK_PATH,
    methods=["HEAD", "GET"],
    summary="Answer Mandrill's URL check",
    description="Mandrill sends an unsigned HEAD when a webhook or inbound route is saved.",
)
async def url_check() -> Response:
    return Response(status_code=200)


async def receive_batch(request: Request) -> Response:
    """Verify the batch, store it durably and queue it for the workers; the answer."""
    in_flight: InFlight = request.app.state.in_flight
    # The ticket's bytes stay reserved while the body is held: verified, then stored.
    with in_flight.ticket(request) as ticket:
        batch = await verified_batch(request, ticket)
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


class _ReceiveBatch:
    """:func:`receive_batch` as an ASGI app (a class instance, so that ``Route`` serves
    it as one instead of wrapping it in a request-response function)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await receive_batch(Request(scope, receive))
        await response(scope, receive, send)


class _BatchRoute(Route):
    """A Starlette route that names itself in the scope, as FastAPI's own routes do: the
    app's router (FastAPI's) leaves that to the route, and the request metrics and log
    line read it (:func:`shared.web.route_template.route_template`)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def batch_route() -> Route:
    """The webhook POST route, to add to the app's router next to :data:`router`."""
    return _BatchRoute(WEBHOOK_PATH, _ReceiveBatch(), methods=["POST"], name="receive_batch")


def _accepted(delivery_id: str | None) -> Response:
    body = (
        b'{"status":"accepted","delivery_id":'
        + (f'"{delivery_id}"'.encode() if delivery_id else b"null")
        + b"}"
    )
    return Response(body, media_type="application/json")
