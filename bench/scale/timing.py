"""Timing the probes: p50 and p95 over repeated runs through the API's query functions
on an engine built as the API builds its own (``shared.db.make_engine``: psycopg
prepares a statement after a few runs, so the later runs time the plan the API keeps),
and the plan PostgreSQL chose for each probe's first statement (EXPLAIN)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from bench.scale.probes import Probe

# Relations whose full scan would grow with the mail.
BIG = {"emails", "deliveries", "delivery_events", "attachments", "events"}


@dataclass(frozen=True)
class Timed:
    list_name: str
    request: str
    p50_ms: float
    p95_ms: float
    rows: int
    plan: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "request": self.request,
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            "rows": self.rows,
            "plan": self.plan,
        }


def _rows(result: Any) -> int:
    page = result[0] if isinstance(result, tuple) else result
    return len(getattr(page, "rows", getattr(page, "by_domain", [])))


def time_probes(engine: Engine, probes: list[Probe], runs: int) -> list[Timed]:
    timed = []
    for probe in probes:
        plan = _plan(engine, probe)
        samples = []
        rows = 0
        with Session(engine) as session:
            for attempt in range(runs + 2):  # two warm-up runs
                started = time.perf_counter()
                result = probe.run(session)
                elapsed = 1000 * (time.perf_counter() - started)
                session.rollback()
                session.expunge_all()
                if attempt >= 2:
                    samples.append(elapsed)
                rows = _rows(result)
        samples.sort()
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        timed.append(
            Timed(probe.list_name, probe.request, statistics.median(samples), p95, rows, plan)
        )
    return timed


def _plan(engine: Engine, probe: Probe) -> str:
    """The scans of the plan of the probe's first statement: ``index name`` for index
    scans, ``Seq Scan table`` for a full scan of a table that grows with the mail."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and probe.plan_of in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            probe.run(session)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    if not captured:
        return "?"
    statement, parameters = captured[0]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        found = cursor.fetchone()
        assert found is not None  # EXPLAIN always answers a row
        plan = found[0]
        raw.rollback()
    finally:
        raw.close()
    if isinstance(plan, str):
        plan = json.loads(plan)
    scans: list[str] = []
    _scans(plan[0]["Plan"], scans)
    return ", ".join(dict.fromkeys(scans)) or "no scan"


def _scans(node: dict[str, Any], out: list[str]) -> None:
    kind = node.get("Node Type", "")
    if "Index" in kind and "Index Name" in node:
        out.append(node["Index Name"])
    elif kind == "Seq Scan":
        relation = node.get("Relation Name", "")
        out.append(f"Seq Scan {relation}" if relation in BIG else f"seq {relation}")
    for child in node.get("Plans", []):
        _scans(child, out)
