"""A worker of its own on a scratch database, for tests that change the schema under
it (triggers) or its settings (time limits), and a way to post batches to it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.settings import Settings
from tests import services
from tests.services import derive_settings
from tests.webhooks import signed_form


@dataclass(frozen=True)
class ScratchStack:
    settings: Settings
    engine: Engine
    worker_log: Path

    def post(self, events: str) -> str:
        """Accept a batch through a real receiver app (in this process); its delivery id."""
        from fastapi.testclient import TestClient

        from receiver.app import create_app

        body, headers = signed_form(events)
        with TestClient(create_app(self.settings)) as client:
            response = client.post("/api/v1/webhooks/mailchimp", content=body, headers=headers)
        assert response.status_code == 200, response.text
        delivery_id: str = response.json()["delivery_id"]
        return delivery_id


@contextmanager
def scratch_stack(
    base: Settings, admin_url: str, log_dir: Path, **changes: object
) -> Iterator[ScratchStack]:
    with services.fresh_database(admin_url) as url:
        upgrade_to_head(url)
        settings = derive_settings(
            base,
            database_url=url,
            queue_name=f"kave-scratch-{uuid.uuid4().hex[:8]}",
            worker_metrics_port=0,
            **changes,
        )
        engine = make_engine(settings)
        log_path = log_dir / "scratch-worker.log"
        try:
            with services.worker_process(settings, log_path, concurrency=1):
                yield ScratchStack(settings, engine, log_path)
        finally:
            engine.dispose()
