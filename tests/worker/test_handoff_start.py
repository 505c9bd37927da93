"""Workers refuse to start with an invalid hand-off routes file (pure: nothing starts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError
from worker.celery_app import create_celery_app


def test_the_worker_refuses_to_start_with_an_invalid_routes_file(tmp_path: Path) -> None:
    broken = tmp_path / "routes.json"
    broken.write_text(json.dumps({"routes": [{"name": "a", "handler": {"celery": {}}}]}))
    settings = Settings(
        _env_file=None, redis_url="redis://127.0.0.1:1/0", handoff_routes_file=broken
    )
    with pytest.raises(SettingsError, match=r"routes\.0\.handler"):
        create_celery_app(settings)
