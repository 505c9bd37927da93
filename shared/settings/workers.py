"""The queue and the workers: visibility, time limits, retries, reconciliation, and the
caps on what one inbound email may make a worker do.

``production`` checks that the visibility timeout exceeds the task time limit, and that
the raw archive (``retention``) outlives the retry deadline.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.settings.common import MIB


class WorkerFields(BaseModel):
    # --- queue and workers ----------------------------------------------------------
    queue_name: str = "kave"
    # A message a worker took but never acknowledged comes back after this long.
    # Must exceed task_time_limit_seconds so that no live task is ever handed out twice.
    visibility_timeout_seconds: int = Field(default=300, gt=0)
    task_time_limit_seconds: int = Field(default=240, gt=0)
    worker_concurrency: int = Field(default=2, ge=1)
    # How often a worker looks for messages of dead workers whose visibility timeout
    # passed; a lost task is back in the queue within visibility timeout + this.
    unacked_restore_interval_seconds: int = Field(default=10, ge=1)

    # --- reliability ----------------------------------------------------------------
    # A delivery that keeps failing on a service outage is retried (exponential backoff
    # with jitter, at most retry_backoff_max_seconds apart) until this long after it was
    # received, then dead-lettered so that it can be replayed once the outage is over.
    retry_deadline_seconds: int = Field(default=6 * 3600, gt=0)
    retry_backoff_max_seconds: int = Field(default=60, ge=1)
    # Errors of an unknown kind are retried this many times before they dead-letter.
    unknown_error_retries: int = Field(default=3, ge=0)
    # An event whose processing kills its worker (crash, out of memory, time limit)
    # this many times is dead-lettered instead of being retried forever.
    max_worker_losses: int = Field(default=3, ge=1)
    # Deliveries still unfinished this long after their last attempt are re-enqueued by
    # `kave reconcile` (Celery beat runs it every reconcile_interval_seconds).
    reconcile_after_seconds: int = Field(default=900, ge=1)
    reconcile_interval_seconds: int = Field(default=300, ge=1)

    # --- hostile input (worker hardening; the client timeouts are in stores) ---------
    # Caps per inbound email, far above real mail (see RELIABILITY.md, "Hostile input"):
    # an email over one is dead-lettered before anything of it is uploaded or parsed in
    # full. MIME parts counts every entity (containers, leaves, attached messages);
    # nesting is how many multiparts and attached messages enclose the deepest part;
    # header bytes are the header sections of the message and all its parts together.
    email_max_mime_parts: int = Field(default=1000, ge=1)
    email_max_nesting_depth: int = Field(default=20, ge=1, le=100)
    email_max_header_bytes: int = Field(default=1 * MIB, ge=1024)
    email_max_attachments: int = Field(default=500, ge=1)
    # Objects of one email (raw message, attachments) uploaded at once to S3 (the local
    # store writes them one after another); botocore's connection pool holds 10
    # connections, so more would only wait for one.
    upload_concurrency: int = Field(default=8, ge=1, le=10)
