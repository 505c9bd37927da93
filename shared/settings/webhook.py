"""The webhook and the receiver's limits: who may sign, and what a POST may cost.

The registered URLs and signing keys (``MANDRILL_TEST_KEY`` is the key Mandrill's own
validation POST is signed with), the size and shape a body may have, the claim-check
threshold, the enqueue timeout, and the receiver's per-process memory, per-client and
slow-body limits. ``production`` checks that ``receiver_max_buffered_bytes`` holds at
least one ``max_body_bytes``; the webhook's rate limit lives with the others in
``access``.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings.common import MIB, split_csv

# Mandrill signs the validation POST it sends when a webhook is saved with this literal key.
MANDRILL_TEST_KEY = "test-webhook"


class WebhookFields(BaseModel):
    # Every URL exactly as registered in Mandrill (the signature covers it byte for byte).
    mandrill_webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Every key that may sign a webhook: several during rotation, or when a tracking
    # webhook and an inbound route post to the same URL.
    mandrill_webhook_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # A 25 MB email arrives as a ~55 MB POST; common 1-2.5 MB defaults reject normal mail.
    max_body_bytes: int = Field(default=100 * MIB, gt=0)
    # Mandrill sends one form field (mandrill_events); a body with more pieces between
    # '&' than this is refused (400) before anything is built per field.
    max_form_fields: int = Field(default=8, ge=1)
    # Bodies above this go to the object store and only a pointer goes through Redis.
    claim_check_threshold_bytes: int = Field(default=1 * MIB, ge=0)
    # Mandrill gives up on a slow answer; we would rather say 503 and let it retry.
    enqueue_timeout_seconds: float = Field(default=1.5, gt=0)
    # Bytes all webhook bodies being received or handled may hold in one receiver
    # process; past it a POST is answered 503 with Retry-After (Mandrill retries). The
    # default holds two batches of the default KAVE_MAX_BODY_BYTES plus room for smaller
    # ones, and leaves the Kubernetes memory limit room for the process itself and for
    # the copies a large body briefly costs while it is stored. Never below
    # max_body_bytes, or a batch of the largest accepted size could never be accepted.
    receiver_max_buffered_bytes: int = Field(default=256 * MIB, gt=0)
    # Webhook POSTs one client address (see KAVE_TRUSTED_PROXIES) may have in flight in
    # one receiver process; past it 429 with Retry-After, before the body is read.
    # Generous: Mandrill may post several batches at once from one address, and behind a
    # proxy missing from KAVE_TRUSTED_PROXIES every client shares the proxy's address.
    receiver_max_requests_per_client: int = Field(default=64, ge=1)
    # A body must keep arriving: a POST whose next bytes take longer than the idle
    # timeout, or that has received fewer than min_rate x (elapsed - grace) bytes, is
    # answered 408 and its connection closed. A body of N bytes may thus take up to
    # grace + N / min_rate; the default rate is far below any working link's, so only a
    # client that trickles on purpose (holding a connection and its buffer) is dropped.
    receiver_body_idle_seconds: float = Field(default=30.0, gt=0)
    receiver_body_grace_seconds: float = Field(default=10.0, ge=0)
    receiver_body_min_rate_bytes: int = Field(default=64 * 1024, gt=0)

    _split_urls = field_validator("mandrill_webhook_urls", mode="before")(split_csv)
    _split_keys = field_validator("mandrill_webhook_keys", mode="before")(split_csv)

    def webhook_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.mandrill_webhook_keys]
