"""The stage's figure: time to agent (p50 and p99) against offered rate, Kave and ceiling."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.tta.load import P99_LIMIT_MS, Step

STYLES = {"kave": "tab:blue", "ceiling": "tab:gray"}


def write(path: Path, steps: Mapping[str, Sequence[Step]]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    from matplotlib import pyplot
    from matplotlib.ticker import ScalarFormatter

    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=120)
    for name, found in steps.items():
        for quantile, style in (("p50_ms", "--"), ("p99_ms", "-")):
            # A step whose mail never all arrived has no finite p99: no point for it.
            points = [
                (s.offered, getattr(s, quantile))
                for s in found
                if not math.isinf(getattr(s, quantile))
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                label = f"{name} {quantile.removesuffix('_ms')}"
                axes.plot(xs, ys, style, marker="o", color=STYLES.get(name), label=label)
    axes.axhline(
        P99_LIMIT_MS, color="tab:red", linewidth=0.8, label=f"p99 limit ({P99_LIMIT_MS:g} ms)"
    )
    axes.set_yscale("log")  # milliseconds to seconds: a saturated step stays on the page
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("offered rate (emails/s, one ~20 KB email per POST)")
    axes.set_ylabel("time to agent (ms)")
    axes.set_title("Mandrill POST to the agent's handler")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
