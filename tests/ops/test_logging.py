"""The logging pipeline: JSON in production, console in development, secrets redacted."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from shared.logging import REDACTED, add_celery_task_ids, redact_secrets, scrub_url_passwords
from tests.services import REPO


def test_secret_and_payload_fields_are_redacted_at_any_depth() -> None:
    event: dict[str, Any] = {
        "event": "x",
        "password": "hunter2",
        "db_password": "hunter2",
        "jwt_secret": "s3cr3t",
        "s3_secret_access_key": "AKIA...",
        "access_token": "eyJ...",
        "key": "webhook-key",
        "raw_msg": "Received: from ...",
        "mandrill_events": "[...]",
        "envelope": {"delivery_id": "d"},
        "request": {"headers": {"Authorization": "Bearer eyJ...", "X-Mandrill-Signature": "sig"}},
        "delivery_id": "d-1",
        "payload_key": "kave:payload:d-1",  # an object key, not a secret
        "size": 12,
    }
    out = redact_secrets(None, "info", dict(event))
    for name in (
        "password",
        "db_password",
        "jwt_secret",
        "s3_secret_access_key",
        "access_token",
        "key",
        "raw_msg",
        "mandrill_events",
        "envelope",
    ):
        assert out[name] == REDACTED, name
    assert out["request"]["headers"] == {
        "Authorization": REDACTED,
        "X-Mandrill-Signature": REDACTED,
    }
    assert (out["delivery_id"], out["payload_key"], out["size"]) == ("d-1", "kave:payload:d-1", 12)


def test_url_passwords_are_scrubbed_from_any_text() -> None:
    assert (
        scrub_url_passwords("Cannot connect to redis://:s3cr3t@redis:6379/0: refused")
        == "Cannot connect to redis://:***@redis:6379/0: refused"
    )
    assert (
        scrub_url_passwords("postgresql+psycopg://kave:pw@postgres:5432/kave")
        == "postgresql+psycopg://kave:***@postgres:5432/kave"
    )
    assert scrub_url_passwords("https://host/path?a=b") == "https://host/path?a=b"
    out = redact_secrets(None, "error", {"event": "failed: redis://u:pw@h:1/0", "errors": ["x"]})
    assert out["event"] == "failed: redis://u:***@h:1/0"


_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import structlog
    from shared.logging import configure_logging
    from shared.settings import Settings

    for env in ("production-like", "development"):
        settings = Settings(
            _env_file=None,
            env="test" if env != "development" else "development",
            database_url="postgresql://u:pw@db/kave",
            redis_url="redis://r:6379/0",
        )
        configure_logging(settings, process="probe")
        structlog.contextvars.bind_contextvars(request_id="rid-1", delivery_id="d-1")
        structlog.get_logger("kave.probe").info("probe.ours", token="t0ken", size=3)
        structlog.get_logger("kave.probe").debug("probe.below_the_level")
        logging.getLogger("celery.worker.consumer").warning(
            "Connected to redis://:hunter2@redis:6379/0"
        )
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        structlog.contextvars.clear_contextvars()
        sys.stderr.write("---\\n")
        sys.stderr.flush()
    """
)


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (logging is configured once per process)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def test_json_in_production_console_in_development_same_pipeline_for_foreign_loggers() -> None:
    result = _run_script(_SCRIPT)
    assert result.returncode == 0, result.stderr
    production, development, _ = result.stderr.split("---\n")
    lines = [json.loads(line) for line in production.splitlines()]
    ours, celery, uvicorn = lines
    assert ours["event"] == "probe.ours"
    assert ours["token"] == REDACTED
    for line in lines:
        assert (line["request_id"], line["delivery_id"]) == ("rid-1", "d-1")
        assert line["process"] == "probe"
        assert {"timestamp", "level", "logger"} <= set(line)
    assert celery["event"] == "Connected to redis://:***@redis:6379/0"
    assert celery["logger"] == "celery.worker.consumer"
    assert "RuntimeError: boom" in uvicorn["exception"]
    assert "hunter2" not in result.stderr
    assert "probe.below_the_level" not in result.stderr  # the level is INFO

    # Development: readable console lines, not JSON, with the same fields.
    dev_lines = development.splitlines()
    assert dev_lines
    assert not dev_lines[0].startswith("{")
    assert "probe.ours" in dev_lines[0]
    assert "request_id=rid-1" in dev_lines[0]
    assert "t0ken" not in development
    assert "hunter2" not in development


def test_celery_lines_outside_a_task_name_the_task_and_its_delivery() -> None:
    record = logging.LogRecord("celery.app.trace", logging.ERROR, "", 0, "lost", None, None)
    record.data = {  # what Celery passes as ``extra``
        "id": "task-1",
        "kwargs": "delivery_id=6c1e9c4e-1d2b-4c6f-9a51-0f3c2a9b7d10 size=5541",
    }
    out = add_celery_task_ids(None, "error", {"event": "lost", "_record": record})
    assert out["task_id"] == "task-1"
    assert out["delivery_id"] == "6c1e9c4e-1d2b-4c6f-9a51-0f3c2a9b7d10"
    plain = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "x", None, None)
    assert add_celery_task_ids(None, "info", {"event": "x", "_record": plain}) == {
        "event": "x",
        "_record": plain,
    }


_CLOSED_STREAM_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import structlog
    from shared.logging import configure_logging
    from shared.settings import Settings

    configure_logging(Settings(_env_file=None, env="test"), process="probe")
    log = structlog.get_logger("kave.probe")
    log.info("probe.before")
    # The stream goes away under the logger (a closed pipe, an interpreter shutting down).
    (handler,) = logging.getLogger().handlers
    closed = open(sys.argv[1], "w")
    closed.close()
    handler.setStream(closed)
    log.info("probe.after", delivery_id="d-1")
    print("still running")
    """
)


def test_a_line_that_cannot_be_written_does_not_fail_the_code_that_logged_it(
    tmp_path: Path,
) -> None:
    result = _run_script(_CLOSED_STREAM_SCRIPT, str(tmp_path / "closed.log"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still running\n"
    assert "probe.before" in result.stderr
    assert "--- Logging error: ValueError ---" in result.stderr
    assert "d-1" not in result.stderr  # the line itself is dropped, not dumped
