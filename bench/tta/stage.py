"""The time-to-agent stage: stepped offered rates against Kave's stack and the ceiling's.

Both stacks are up together (``bench.tta.stacks``) and each rate is measured on both, in
alternating order from one rate to the next, so that the load of a shared machine
drifting over minutes falls on both alike. A stack's steps stop after its first step
that is not sustained (p99 over 250 ms, a refused batch, or a growing queue): the
sustained rate is known by then, and a saturated stack's backlog would only load the
machine under the other's next step. What a failed step left queued is dropped (the
queue and the receiver's ledger entries) before the next step.

The figure is the ratio of the sustained rates, Kave / ceiling (issue 35: at least 50%).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from bench.tta import load, plot
from bench.tta.stacks import Shared, Stack, shared_services, stack
from loadkit.fsync_probe import FsyncProbe

# Past Kave's knee (60-80/s here) the steps only load the ceiling, which must fail one too:
# a stack that sustained every rate offered has a sustained rate of at least the last.
RATES = (5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 120.0, 160.0, 240.0)
QUICK_RATES = (5.0, 10.0, 20.0, 40.0)
STEP_SECONDS = 25.0
QUICK_STEP_SECONDS = 8.0
DRAIN_SECONDS = 15.0
WARM_UP_RATE = 5.0
WARM_UP_SECONDS = 6.0
MIN_RATIO = 0.5  # issue 35
P99_AT_10_MAX_MS = 50.0  # issue 35


def _drop_leftovers(shared: Shared, st: Stack) -> None:
    """What a failed step left: its queued messages and their ledger entries (which beat's
    reconciliation would otherwise queue again, under the next step)."""
    client = redis.Redis.from_url(shared.redis_url)
    client.delete(st.settings.queue_name)
    for key in client.scan_iter(match=f"kave:accepted:{st.settings.queue_name}:*", count=1000):
        client.delete(key)
    client.close()


def _step(shared: Shared, st: Stack, rate: float, seconds: float, seed: int) -> load.Step:
    emails = load.make_emails(max(int(rate * seconds), 1), seed)
    step = load.Step(st.name, rate, seconds)
    target = load.Target(st.receiver, shared.redis_url, st.settings.queue_name)
    with FsyncProbe(shared.tmp) as probe:
        load.send_step(target, rate, emails, step)
        record = load.wait_arrivals(shared.handler_url.rsplit("/", 1)[0], emails, DRAIN_SECONDS)
    step.fsync_max_ms = round(probe.max_ms, 1)
    step.repeats = record["repeats"]
    load.summarise(step, emails, record["arrived"])
    if step.delivered < step.accepted:
        _drop_leftovers(shared, st)
    return step


def _describe(step: load.Step) -> str:
    def ms(value: float) -> str:
        return "never" if math.isinf(value) else f"{value:,.0f} ms"

    return (
        f"  time to agent {step.stack:7} {step.offered:4.0f}/s offered, "
        f"{step.achieved:5.1f}/s achieved: p50 {ms(step.p50_ms)}, p99 {ms(step.p99_ms)}, "
        f"{step.delivered}/{step.sent} arrived, backlog {step.backlog_end}, "
        f"longest fsync {step.fsync_max_ms} ms (load {step.load_average})"
    )


def run(
    tmp: Path,
    *,
    quick: bool,
    rates: Sequence[float] = RATES,
    step_seconds: float | None = None,
    plot_path: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    seconds = step_seconds or (QUICK_STEP_SECONDS if quick else STEP_SECONDS)
    work = tmp / "tta"
    work.mkdir(parents=True, exist_ok=True)
    steps: dict[str, list[load.Step]] = {"kave": [], "ceiling": []}
    with (
        shared_services(work) as shared,
        stack(shared, "kave") as kave,
        stack(shared, "ceiling") as ceiling,
    ):
        # Warm up pools, connections and imports in every pool child: after 8 emails, the
        # first step's p99 was 59-133 ms against ~30 ms at the next ones (2026-12-07).
        for n, st in enumerate((kave, ceiling)):
            _step(shared, st, WARM_UP_RATE, WARM_UP_SECONDS, seed=100 * n)
        seed = 1_000_000
        for i, rate in enumerate(sorted(rates)):
            for st in (kave, ceiling) if i % 2 == 0 else (ceiling, kave):
                done = steps[st.name]
                if done and not done[-1].sustained:
                    continue
                done.append(_step(shared, st, rate, seconds, seed))
                seed += 1_000_000
                progress(_describe(done[-1]))
    figures: dict[str, Any] = {
        "step_seconds": seconds,
        "p99_limit_ms": load.P99_LIMIT_MS,
        "email_post_bytes": len(load.make_emails(1, 0)[0].body),
        "rates": list(rates),
        "steps": {name: [s.as_dict() for s in found] for name, found in steps.items()},
    }
    figures["sustained"] = {name: load.sustained_rate(found) for name, found in steps.items()}
    ceiling_rate = figures["sustained"]["ceiling"]
    figures["ratio"] = figures["sustained"]["kave"] / ceiling_rate if ceiling_rate else None
    if plot_path is not None:
        plot.write(plot_path, steps)
        figures["plot"] = str(plot_path)
    return figures


def _fsync(longest: float | None) -> str:
    return "?" if longest is None else f"{longest:,.0f}"


def _load(averages: list[float]) -> str:
    return f"{averages[0]:.1f}" if averages else "?"


def section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    lines = [
        f"### Time to agent: one ~{data['email_post_bytes'] / 1024:.0f} KB email per batch, "
        f"{data['step_seconds']:g} s per step, Kave's stack and the ceiling's alternating",
        "",
        "| stack | offered /s | achieved /s | p50 ms | p99 ms | arrived | backlog | "
        "longest fsync ms | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(value: float | None) -> str:
        return "never" if value is None else f"{value:,.0f}"

    for name, steps in data["steps"].items():
        lines += [
            f"| {name} | {s['offered']:g} | {s['achieved']:.1f} | {ms(s['p50_ms'])} | "
            f"{ms(s['p99_ms'])} | {s['delivered']}/{s['sent']} | {s['backlog_end']} | "
            f"{_fsync(s.get('fsync_max_ms'))} | {_load(s['load_average'])} |"
            for s in steps
        ]
    sustained, ratio = data["sustained"], data["ratio"]
    # False: the stack sustained every rate offered, so its sustained rate is a lower bound.
    saturated = {
        name: any(not s["sustained"] for s in steps) for name, steps in data["steps"].items()
    }

    def rate(name: str) -> str:
        return f"{sustained[name]:g}/s" if saturated[name] else f">= {sustained[name]:g}/s"

    lines += [
        "",
        f"- sustained (p99 <= {data['p99_limit_ms']:g} ms, queue not growing): Kave "
        f"{rate('kave')}, ceiling {rate('ceiling')}, ratio "
        + ("n/a" if ratio is None else f"**{ratio:.0%}**"),
    ]
    lines.append(
        "- longest fsync: of a 4 KB write fsynced every 0.2 s beside the stacks' files during "
        "the step (Kave's delivery waits on fsyncs, the ceiling's on none; a stall of the "
        "disk under a step is its p99 at low rates)"
    )
    if not saturated["ceiling"]:
        lines.append(
            "- the ceiling sustained every rate offered: the ratio is at most this "
            "(offer higher rates with --tta-rates)"
        )
    if data.get("plot"):
        lines.append(f"- plot: `{data['plot']}`")
    checks = []
    if ratio is not None:
        checks.append(
            (
                f"time to agent: Kave's sustained rate >= {MIN_RATIO:.0%} of the ceiling's "
                f"(got {ratio:.0%})",
                ratio >= MIN_RATIO,
            )
        )
    at_10 = [s for s in data["steps"]["kave"] if s["offered"] == 10]
    if at_10:
        p99 = at_10[0]["p99_ms"]
        checks.append(
            (
                f"time to agent at 10/s: p99 <= {P99_AT_10_MAX_MS:g} ms (got {ms(p99)} ms)",
                p99 is not None and p99 <= P99_AT_10_MAX_MS,
            )
        )
    return lines, checks
