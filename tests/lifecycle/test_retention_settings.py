"""The retention policy's safety check: the archive outlives the retry deadline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def test_archive_retention_must_cover_the_retry_deadline() -> None:
    with pytest.raises(ValidationError, match="KAVE_RETENTION_ARCHIVE_DAYS must cover"):
        Settings(_env_file=None, retention_archive_days=1, retry_deadline_seconds=2 * 86400)
    Settings(_env_file=None, retention_archive_days=2, retry_deadline_seconds=2 * 86400)
    Settings(_env_file=None, retention_archive_days=0, retry_deadline_seconds=2 * 86400)


def test_defaults_keep_everything_but_the_archive_forever() -> None:
    settings = Settings(_env_file=None)
    assert settings.retention_archive_days * 86400 >= settings.retry_deadline_seconds
    assert settings.retention_emails_days == 0
    assert settings.orphan_grace_seconds >= settings.retry_deadline_seconds
