"""The hand-off to the platform (README "Handing emails to your platform"): the routes
file, and how the dispatcher retries and sweeps its outbox.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from shared.settings.common import empty_is_unset


class HandoffFields(BaseModel):
    # The ordered routes (YAML or JSON; worker/handoff/routes.py). Unset: no hand-off.
    handoff_routes_file: Path | None = None
    # Publishing attempts per dispatch before it becomes a dead letter (kind "dispatch").
    handoff_max_attempts: int = Field(default=8, ge=1)
    handoff_backoff_max_seconds: int = Field(default=300, ge=1)
    # How often Celery beat sweeps the outbox for pending dispatches (crash recovery).
    handoff_sweep_interval_seconds: float = Field(default=10.0, gt=0)

    _handoff_empty_is_unset = field_validator("handoff_routes_file", mode="before")(empty_is_unset)
