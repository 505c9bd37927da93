"""Several worker nodes on one queue: the load is shared and every event stored once."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from shared.models import DeadLetter, Delivery, DeliveryEvent, DeliveryStatus, Email, Event
from shared.settings import Settings
from tests.ops.support import json_lines, scrape, unique_inbound, unique_open, value
from tests.services import derive_settings, free_port, receiver_process, wait_until, worker_process
from tests.webhooks import post_events, wait_for_deliveries

NODES = 3
BATCHES = 30
INBOUND_PER_BATCH = 3
OPENS_PER_BATCH = 7
RESENT_BATCHES = 3  # Mandrill retries: the same body again, under a new delivery id
TASK = "kave.delivery.process"


def test_three_worker_nodes_share_the_load_and_store_every_event_once(
    isolated_settings: Settings, isolated_engine: Engine, tmp_path: Path
) -> None:
    batches = [
        json.dumps(
            [unique_inbound() for _ in range(INBOUND_PER_BATCH)]
            + [unique_open() for _ in range(OPENS_PER_BATCH)]
        )
        for _ in range(BATCHES)
    ]
    bodies = batches + batches[:RESENT_BATCHES]

    with ExitStack() as stack:
        nodes: dict[str, tuple[Path, str]] = {}
        for n in range(NODES):
            port = free_port()
            settings = derive_settings(isolated_settings, worker_metrics_port=port)
            name = f"scale{n}"
            log_path = tmp_path / f"{name}.log"
            stack.enter_context(worker_process(settings, log_path, concurrency=1, name=name))
            nodes[name] = (log_path, f"http://127.0.0.1:{port}/metrics")
        receiver = stack.enter_context(
            receiver_process(isolated_settings, tmp_path / "receiver.log")
        )

        def send(events: str) -> str:
            response = post_events(receiver, events)
            assert response.status_code == 200, response.text
            delivery_id: str = response.json()["delivery_id"]
            return delivery_id

        with ThreadPoolExecutor(max_workers=8) as pool:
            delivery_ids = list(pool.map(send, bodies))
        assert len(set(delivery_ids)) == len(bodies)
        wait_for_deliveries(isolated_engine, delivery_ids, timeout=120)

        def processed_per_node() -> dict[str, float]:
            return {
                name: value(scrape(url), "kave_worker_tasks_total", task=TASK, state="SUCCESS")
                for name, (_, url) in nodes.items()
            }

        wait_until(lambda: sum(processed_per_node().values()) == len(bodies), 15, "task counters")
        per_node = processed_per_node()

    # Every event stored exactly once; the resent batches found duplicates only.
    inbound = BATCHES * INBOUND_PER_BATCH
    opens = BATCHES * OPENS_PER_BATCH
    per_batch = INBOUND_PER_BATCH + OPENS_PER_BATCH
    with Session(isolated_engine) as session:
        assert session.scalar(select(func.count()).select_from(Email)) == inbound
        assert session.scalar(select(func.count()).select_from(Event)) == opens
        statuses = Counter(session.scalars(select(Delivery.status)).all())
        assert statuses == {DeliveryStatus.PROCESSED: len(bodies)}
        outcomes = dict(
            session.execute(
                select(DeliveryEvent.outcome, func.count()).group_by(DeliveryEvent.outcome)
            ).all()
        )
        assert outcomes == {"stored": inbound + opens, "duplicate": RESENT_BATCHES * per_batch}
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0

    # The load was shared: every node processed deliveries, and each delivery was
    # processed by exactly one node (the logs say which).
    assert all(count > 0 for count in per_node.values()), per_node
    assert sum(per_node.values()) == len(bodies)
    processed_by: dict[str, list[str]] = {}
    for name, (log_path, _) in nodes.items():
        for line in json_lines(log_path):
            if line["event"] == "delivery.processed":
                processed_by.setdefault(line["delivery_id"], []).append(name)
    assert sorted(processed_by) == sorted(delivery_ids)
    doubles: dict[str, Any] = {d: n for d, n in processed_by.items() if len(n) != 1}
    assert not doubles
    assert Counter(n[0] for n in processed_by.values()) == per_node
