"""Logs, metrics and the Flower dashboard: levels and formats, the workers' metrics
endpoint, the timeouts and thresholds of the pipeline gauges, and the secrets guarding
``/metrics`` and Flower.

Which log format applies also depends on ``KAVE_ENV``, so ``effective_log_format`` is on
the combined class; the strength of the two secrets is ``production``'s question.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator

from shared.settings.common import empty_is_unset


class ObservabilityFields(BaseModel):
    # --- logs and dashboard ---------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None
    # user:password[,user:password] for Flower. Flower itself reads FLOWER_BASIC_AUTH, so
    # that name is read first: production then checks the password Flower really uses.
    flower_basic_auth: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "FLOWER_BASIC_AUTH", "KAVE_FLOWER_BASIC_AUTH", "flower_basic_auth"
        ),
    )

    # --- metrics --------------------------------------------------------------------
    # Each worker node (the main process of `celery worker`) serves the Prometheus
    # metrics of all its pool processes on this port; 0 turns it off. Bind 0.0.0.0 in a
    # container so that Prometheus can reach it.
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # Where the pool processes of a worker node write their metrics (prometheus_client
    # multiprocess mode). Empty: a fresh temporary directory per node. Never share one
    # directory between nodes; it is emptied when the node starts.
    worker_metrics_dir: Path | None = None
    # Time the API's /metrics gives its Redis read and its PostgreSQL queries (the pipeline
    # collector: backlog, alerting and audit gauges).
    metrics_query_timeout_seconds: float = Field(default=2.0, gt=0)
    # How long inbound mail may be silent before the KaveNoInboundMail alert fires
    # (published as kave_inbound_silence_threshold_seconds; deploy/prometheus reads it).
    inbound_silence_alert_seconds: float = Field(default=6 * 3600.0, gt=0)
    # Bearer token /metrics of the receiver and the API requires (Prometheus: `authorization:
    # credentials`). Required in production: at least 32 characters, not a placeholder.
    # Unset in development and test: /metrics is open.
    metrics_token: SecretStr | None = None

    _observability_empty_is_unset = field_validator(
        "flower_basic_auth", "worker_metrics_dir", "metrics_token", mode="before"
    )(empty_is_unset)
