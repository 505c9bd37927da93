"""The pieces of the time-to-agent stage (bench/tta/), without running the bench: its
figures from given samples, and the agent handler's record of signed hand-offs."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.tta import load, stage
from bench.tta.handler import Recorder, make_server
from loadkit.percentiles import percentile
from worker.handoff.http import sign

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [50.0, 10.0, 40.0, 20.0, 30.0]

    assert percentile(samples, 0.50) == 30.0
    assert percentile(samples, 0.99) == pytest.approx(49.6)
    assert percentile([7.0], 0.99) == 7.0
    assert math.isinf(percentile([], 0.5))
    # An email that never arrived keeps the p99 infinite, never NaN.
    assert math.isinf(percentile([10.0, 20.0, math.inf], 0.99))
    assert percentile([10.0, 20.0, math.inf], 0.5) == 20.0


def _emails(sent_at: list[float]) -> list[load.Email]:
    emails = []
    for i, at in enumerate(sent_at):
        email = load.Email(f"m{i}@bench", b"", {}, sent_at=at, status=200)
        email.delivery_id = f"d{i}"
        emails.append(email)
    return emails


def test_a_step_is_summarised_from_send_and_arrival_times() -> None:
    emails = _emails([100.0 + i * 0.1 for i in range(10)])
    # Kave's documents are matched by Message-ID, the ceiling's stubs by delivery id.
    arrived = {f"m{i}@bench": 100.0 + i * 0.1 + 0.020 for i in range(5)}
    arrived |= {f"d{i}": 100.0 + i * 0.1 + 0.040 for i in range(5, 10)}
    step = load.summarise(load.Step("kave", 10.0, 1.0), emails, arrived)

    assert (step.sent, step.accepted, step.delivered) == (10, 10, 10)
    assert step.p50_ms == pytest.approx(30.0)
    assert step.p99_ms == pytest.approx(40.0)
    assert step.achieved == pytest.approx(10 / 0.94)
    assert step.sustained


def test_an_email_that_never_arrives_makes_the_p99_infinite() -> None:
    emails = _emails([100.0 + i * 0.1 for i in range(10)])
    arrived = {f"m{i}@bench": 100.0 + i * 0.1 + 0.010 for i in range(9)}
    step = load.summarise(load.Step("kave", 10.0, 1.0), emails, arrived)

    assert step.delivered == 9
    assert step.p50_ms == pytest.approx(10.0)
    assert math.isinf(step.p99_ms)
    assert not step.sustained
    assert step.as_dict()["p99_ms"] is None


def _step(offered: float, p99: float, backlog: int = 0, accepted: int = 10) -> load.Step:
    return load.Step(
        "kave", offered, 1.0, sent=10, accepted=accepted, p99_ms=p99, backlog_end=backlog
    )


def test_the_sustained_rate_is_the_top_of_the_unbroken_run_of_good_steps() -> None:
    steps = [_step(5, 30), _step(10, 60), _step(20, 240), _step(40, 900), _step(60, 200)]
    assert load.sustained_rate(steps) == 20  # 60/s under the limit after a failure: luck

    # A growing queue fails a step whose p99 is still low (the mail is still queued).
    assert load.sustained_rate([_step(5, 30), _step(40, 100, backlog=11)]) == 5
    assert load.sustained_rate([_step(5, 30), _step(40, 100, backlog=10)]) == 40
    # So does a refused batch.
    assert load.sustained_rate([_step(5, 30, accepted=9)]) == 0


@pytest.fixture
def handler() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(SECRET)
    server = make_server(recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    server.shutdown()
    server.server_close()


def _post(base: str, data: dict[str, object], *, key: bytes, webhook_id: str) -> int:
    body = json.dumps({"type": "email.received", "data": data}).encode()
    timestamp = int(time.time())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        # Signed by Kave's own hand-off signer: what the worker sends must verify.
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }
    return httpx.post(base + "/agent", content=body, headers=headers).status_code


def test_the_handler_records_signed_hand_offs_by_message_id_and_delivery_id(
    handler: tuple[str, Recorder],
) -> None:
    base, recorder = handler
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    before = time.time()

    assert _post(base, {"message_id": "<a1@bench.kave.test>"}, key=key, webhook_id="k1") == 204
    assert _post(base, {"delivery_id": "d-2"}, key=key, webhook_id="k2") == 204
    assert _post(base, {"message_id": "<a1@bench.kave.test>"}, key=key, webhook_id="k1") == 204
    assert _post(base, {"message_id": "<forged@x>"}, key=b"other" * 8, webhook_id="k3") == 401

    record = httpx.get(base + "/received").json()
    assert set(record["arrived"]) == {"a1@bench.kave.test", "d-2"}
    assert all(before <= at <= time.time() for at in record["arrived"].values())
    assert (record["repeats"], record["bad"]) == (1, 1)
    assert recorder.snapshot() == record


def _record(kave: list[load.Step], ceiling: list[load.Step], **figures: Any) -> dict[str, Any]:
    """A stage's record of these steps, as ``stage.run`` writes it."""
    for s in ceiling:
        s.stack = "ceiling"
    return {
        "step_seconds": 1.0,
        "p99_limit_ms": load.P99_LIMIT_MS,
        "email_post_bytes": 20_000,
        "steps": {"kave": [s.as_dict() for s in kave], "ceiling": [s.as_dict() for s in ceiling]},
        **figures,
    }


def test_the_section_comes_from_a_record() -> None:
    data = _record(
        [_step(5, 30), _step(10, 45), _step(20, 400)],
        [_step(5, 10), _step(10, 12), _step(20, 15), _step(40, math.inf)],
        sustained={"kave": 10.0, "ceiling": 20.0},
        ratio=0.5,
    )
    lines, checks = stage.section(data)

    assert "| ceiling | 40 | 0.0 | never | never | 0/10 | 0 | ? | ? |" in "\n".join(lines)
    assert [ok for _, ok in checks] == [True, True]
    # (The plot, bench/tta/plot.py, is left to the bench: importing matplotlib alone
    # takes seconds here.)


def test_a_ceiling_that_sustained_every_rate_is_reported_as_a_lower_bound() -> None:
    data = _record(
        [_step(5, 30), _step(10, 400)],
        [_step(5, 10), _step(10, 12)],
        sustained={"kave": 5.0, "ceiling": 10.0},
        ratio=0.5,
    )
    text = "\n".join(stage.section(data)[0])

    assert "Kave 5/s, ceiling >= 10/s" in text
    assert "the ratio is at most this" in text
