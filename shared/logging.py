"""Structured logging for every Kave process.

One pipeline (structlog) renders our own events and the standard-library records of
Celery, uvicorn and friends alike: JSON lines in production, a readable console in
development. Correlation ids (``request_id``, ``delivery_id``, ``task_id``) are bound
with ``structlog.contextvars`` and appear on every line written while they are bound.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import MutableMapping
from typing import Any

import structlog

from shared.settings import Settings

# Field names whose values must never reach a log line, whoever logs them.
_SECRET_FIELDS = frozenset(
    {
        "password",
        "secret",
        "token",
        "access_token",
        "key",
        "webhook_key",
        "authorization",
        "body",
        "payload",
        "mandrill_events",
        "raw_msg",
        "signature",
    }
)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any field named like a secret or a payload."""
    for field in _SECRET_FIELDS.intersection(event_dict):
        event_dict[field] = "[redacted]"
    return event_dict


def configure_logging(settings: Settings, process: str) -> None:
    def add_process(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("process", process)
        return event_dict

    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_process,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any
    if settings.effective_log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared_processors.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer()

    structlog.configure(
        processors=[
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structured": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        renderer,
                    ],
                    "foreign_pre_chain": shared_processors,
                }
            },
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structured"}},
            "root": {"handlers": ["default"], "level": settings.log_level.upper()},
            "loggers": {
                # uvicorn installs its own handlers; route its records through ours instead.
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                "uvicorn.access": {"handlers": [], "propagate": True},
                # Per-request access lines from botocore and urllib3 are noise at INFO.
                "botocore": {"level": "WARNING"},
                "urllib3": {"level": "WARNING"},
            },
        }
    )
