"""The one percentile of the benchmarks and of the tests that watch latencies: linear
interpolation between the closest ranks (numpy's default, ``statistics.quantiles``'
``inclusive`` method), where an infinite sample (an email that never arrived, in the
time-to-agent stage) stays infinite instead of turning the interpolation into NaN.

Written here rather than taken from ``statistics.quantiles``, which gives the cut points
of n equal groups (not one arbitrary quantile) and interpolates ``inf - inf`` to NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``; infinite when there are none."""
    if not values:
        return math.inf
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    if math.isinf(ordered[high]):
        return ordered[high] if position > low else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
