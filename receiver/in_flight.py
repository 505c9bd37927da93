"""What webhook POSTs in flight may hold in one receiver process: bytes, and requests per
client.

Every webhook POST takes a :class:`Ticket` for its whole life, from before its body is
read until its answer is decided:

- **per client**: at most ``KAVE_RECEIVER_MAX_REQUESTS_PER_CLIENT`` tickets of one client
  address (:func:`shared.client_address.client_address`, the one place that decides who
  the client is) hold a slot at a time. The next is refused with 429 before a byte of its
  body is read: the client is over its own share and others are still served, which is
  what 429 says (503 says the whole service is unavailable). ``Retry-After`` says when to
  try again, and Mandrill retries any refusal anyway;
- **bytes**: the body reader (:mod:`receiver.body`) reserves every byte of buffer it is
  about to allocate, and all tickets together never hold more than
  ``KAVE_RECEIVER_MAX_BUFFERED_BYTES``. Past that a POST is refused with 503 and
  ``Retry-After``: the process, not the client, is out of room; Mandrill retries.
  Not counted: what uvicorn holds for a connection before the app asks for it, which its
  flow control keeps to its high-water mark (64 KiB) per connection.

A ticket gives back all it holds when it is closed (a ``with`` block, so on every path,
errors and cancellation included). Both counts live in this process only: each process
has its own memory to protect, and the counts must never be left behind by a process
that died, as a count in Redis could be. They are read and changed on the event loop
only (never in the verification thread), so they need no lock.

Refusals made before the body has been read to its end close the connection
(``Connection: close``): the server would otherwise go on reading and discarding
whatever the client keeps sending, for as long as it keeps sending.
"""

from __future__ import annotations

from types import TracebackType

from starlette.requests import Request

from shared.client_address import client_address
from shared.settings import Settings
from shared.web.errors import ServiceUnavailableError, TooManyRequestsError

# How long a refused client should wait: requests in flight end within the body deadline,
# and most within milliseconds; Mandrill retries on a schedule of its own anyway.
RETRY_AFTER_SECONDS = 10


class ClientOverLimitError(TooManyRequestsError):
    """This client already has as many webhook POSTs in flight as it may: 429."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this address already has {limit} webhook requests in flight; retry after "
            "the Retry-After seconds (KAVE_RECEIVER_MAX_REQUESTS_PER_CLIENT; behind a proxy, "
            "list it in KAVE_TRUSTED_PROXIES)",
            retry_after=RETRY_AFTER_SECONDS,
        )
        assert self.headers is not None  # set by TooManyRequestsError
        self.headers["Connection"] = "close"


class BufferFullError(ServiceUnavailableError):
    """The process holds as many webhook body bytes as it may: 503, Mandrill retries."""

    def __init__(self) -> None:
        super().__init__(
            "the receiver is holding as much webhook data as it may "
            "(KAVE_RECEIVER_MAX_BUFFERED_BYTES); the batch was not accepted, retry after "
            "the Retry-After seconds",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"},
        )


class InFlight:
    """The counts of one receiver process (one per app: ``app.state.in_flight``)."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.receiver_max_buffered_bytes
        self.max_per_client = settings.receiver_max_requests_per_client
        self.proxies = list(settings.trusted_proxies)
        self.buffered = 0
        self.requests: dict[str, int] = {}

    def ticket(self, request: Request) -> Ticket:
        return Ticket(self, request)


class Ticket:
    """One webhook POST's share of :class:`InFlight`; use it as a ``with`` block."""

    def __init__(self, counts: InFlight, request: Request) -> None:
        self.counts = counts
        self.request = request
        self.client = ""  # known once a slot is taken
        self.reserved = 0
        self._holds_slot = False

    def take_slot(self) -> None:
        """Count this request against its client, or :class:`ClientOverLimitError`."""
        if self._holds_slot:
            return
        # Worked out here, not in __init__: the refusals made before it need no address.
        self.client = client_address(self.request, self.counts.proxies)
        requests = self.counts.requests
        if requests.get(self.client, 0) >= self.counts.max_per_client:
            raise ClientOverLimitError(self.counts.max_per_client)
        requests[self.client] = requests.get(self.client, 0) + 1
        self._holds_slot = True

    def reserve(self, size: int) -> None:
        """Hold ``size`` more bytes of buffer, or :class:`BufferFullError`."""
        if self.counts.buffered + size > self.counts.max_bytes:
            raise BufferFullError()
        self.counts.buffered += size
        self.reserved += size

    def close(self) -> None:
        """Give back every byte and the slot; safe to call more than once."""
        self.counts.buffered -= self.reserved
        self.reserved = 0
        if self._holds_slot:
            self._holds_slot = False
            left = self.counts.requests[self.client] - 1
            if left:
                self.counts.requests[self.client] = left
            else:
                del self.counts.requests[self.client]  # no entry per address ever seen

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
