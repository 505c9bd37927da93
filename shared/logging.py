"""Structured logging for every Kave process.

One pipeline (structlog) renders our own events and the standard-library records of
Celery, uvicorn, Flower and friends alike: JSON lines in production, a readable console
in development. Our own events are rendered by structlog and written straight to the
stream (:class:`_StreamLogger`), not handed to the standard library's logging as records:
that path made two ``LogRecord`` objects, looked the caller's frame up and formatted
again, ~44 us a line against ~18 us, and the receiver writes two lines per webhook. The
standard-library records go through ``ProcessorFormatter`` with the same processors, to
the same stream, under the same lock.

Correlation ids (``request_id``, ``delivery_id``, ``task_id``) are bound with
``structlog.contextvars`` and appear on every line written while they are bound:
the receiver binds ``request_id`` per request, a worker binds all three per task (see
``worker.celery_app``). The last step of the pipeline redacts secrets and payloads,
whoever logged them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import logging.config
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from shared.settings import Settings

REDACTED = "[redacted]"

# Field names whose values must never reach a log line, whoever logs them.
_SECRET_FIELDS = frozenset(
    {
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "key",
        "webhook_key",
        "webhook_keys",
        "api_key",
        "authorization",
        "cookie",
        "body",
        "payload",
        "mandrill_events",
        "raw_msg",
        "content",
        "signature",
        "x-mandrill-signature",
        "envelope",
    }
)
# ... and any field whose name contains one of these (``db_password``, ``jwt_secret``,
# ``s3_secret_access_key``, ``id_token``), compared in lower case.
_SECRET_PARTS = ("password", "passwd", "secret", "token", "credential")

# ``scheme://user:password@host``: the password part of a URL inside any text.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")

# The summary of a delivery task's arguments reads ``delivery_id=<uuid> size=<n>``
# (``Envelope.summary``, sent as the task's kwargsrepr).
_DELIVERY_IN_SUMMARY = re.compile(r"\bdelivery_id=(?P<id>[0-9a-fA-F-]{36})\b")


@functools.lru_cache(maxsize=4096)
def _is_secret_field(name: str) -> bool:
    # Cached: a process logs the same few dozen field names over and over, and this
    # runs for every field of every line.
    lowered = name.lower()
    return lowered in _SECRET_FIELDS or any(part in lowered for part in _SECRET_PARTS)


def scrub_url_passwords(text: str) -> str:
    """``redis://:pw@host`` -> ``redis://:***@host`` anywhere in a text."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def _redact(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return scrub_url_passwords(value) if "://" in value else value
    if depth <= 0:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _is_secret_field(k) else _redact(v, depth - 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, depth - 1) for item in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any field named like a secret or a payload (in nested
    dicts too), and the password of any URL in a text (event, exception, any string)."""
    for field, value in list(event_dict.items()):
        if field.startswith("_"):
            continue  # structlog's own (``_record``, ``_from_structlog``)
        if _is_secret_field(field):
            event_dict[field] = REDACTED
        elif isinstance(value, str):
            # Most fields: ids, names, numbers as text. Left in place unless a URL.
            if "://" in value:
                event_dict[field] = scrub_url_passwords(value)
        elif isinstance(value, dict | list | tuple):
            event_dict[field] = _redact(value, depth=3)
    return event_dict


def add_celery_task_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Celery passes a task's id and argument summary as the record's ``data``; name them.

    That covers the lines the worker's main process writes about a task outside any
    task context (a pool process killed under it, a time limit); inside a task the
    bound context already holds them.
    """
    record = event_dict.get("_record")
    data = getattr(record, "data", None)
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        event_dict.setdefault("task_id", data["id"])
        summary = data.get("kwargs")
        if isinstance(summary, str) and "delivery_id" not in event_dict:
            match = _DELIVERY_IN_SUMMARY.search(summary)
            if match:
                event_dict["delivery_id"] = match["id"]
    return event_dict


class _StreamLogger:
    """Writes a rendered line to the root handler's stream, under the handler's own lock,
    so that our lines and the standard library's never interleave. ``name`` is read by
    ``add_logger_name``."""

    def __init__(self, name: str, handler: logging.StreamHandler[Any]) -> None:
        self.name = name
        self._handler = handler

    def msg(self, message: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            stream = handler.stream
            stream.write(message + "\n")
            stream.flush()
        except Exception as exc:
            # As the standard library's handlers do: a line that cannot be written (a
            # closed or broken stream) never fails the code that logged it, a webhook
            # already made durable or a task. The line is dropped; the error's kind is
            # reported on the process's original stderr, when there is one.
            with contextlib.suppress(Exception):
                if sys.__stderr__ is not None:
                    sys.__stderr__.write(f"--- Logging error: {type(exc).__name__} ---\n")
        finally:
            handler.release()

    # structlog calls the method named after the level; every level is one line.
    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def configure_logging(settings: Settings, process: str) -> None:
    def add_process(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("process", process)
        return event_dict

    json = settings.effective_log_format == "json"
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_process,
        add_celery_task_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
        # Rendered into a field before redaction, so a URL in a traceback is scrubbed.
        shared_processors.append(structlog.processors.format_exc_info)
    else:
        # Colours only on a terminal: no escape codes in a piped or redirected log.
        colors = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    # Last, so nothing added after it escapes it.
    shared_processors.append(redact_secrets)
    level = settings.log_level.upper()

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
            "root": {"handlers": ["default"], "level": level},
            "loggers": {
                # uvicorn, Celery and Flower's tornado may install their own handlers;
                # route their records through ours instead.
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                # The receiver writes its own access line, "request.finished", with the
                # request id, route template, status and duration; uvicorn's would repeat it.
                "uvicorn.access": {"handlers": [], "propagate": False},
                "celery": {"handlers": [], "propagate": True},
                "celery.task": {"handlers": [], "propagate": True},
                "celery.redirected": {"handlers": [], "propagate": True},
                # The worker logs "task.received" with the task's ids instead (see
                # worker.celery_app); Celery's own "Task ... received" line has none.
                "celery.worker.strategy": {"level": "WARNING"},
                "tornado": {"handlers": [], "propagate": True},
                # Per-request access lines from botocore and urllib3 are noise at INFO.
                "botocore": {"level": "WARNING"},
                "urllib3": {"level": "WARNING"},
            },
        }
    )
    # The handler dictConfig just made (it takes its key as its name).
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "default")
    assert isinstance(handler, logging.StreamHandler)

    def logger_factory(*args: Any) -> _StreamLogger:
        return _StreamLogger(args[0] if args and isinstance(args[0], str) else "", handler)

    structlog.configure(
        processors=[*shared_processors, renderer],
        logger_factory=logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
