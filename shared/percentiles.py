"""Percentiles estimated from per-bucket histograms (the run and wait times the finish script keeps).

`buckets[i]` counts observations in (bounds[i-1], bounds[i]] (the first bucket starts at 0); the last entry
counts those above the largest bound. The q-quantile is found by rank and interpolated linearly inside its
bucket, assuming observations spread evenly across it, the way Prometheus' `histogram_quantile` does. A
rank that falls in the open-ended last bucket cannot be interpolated: the largest bound is returned (a
lower bound of the true value).
"""

from __future__ import annotations

from collections.abc import Sequence


def percentile(bounds: Sequence[float], buckets: Sequence[int], q: float) -> float | None:
    """The estimated q-quantile (0 < q <= 1) in the bounds' unit; None when nothing was observed."""
    if not 0 < q <= 1:
        raise ValueError("q must be in (0, 1]")
    if len(buckets) != len(bounds) + 1:
        raise ValueError("need one bucket per bound plus the +Inf bucket")
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count > 0 and seen + count >= rank:
            if index == len(bounds):
                return float(bounds[-1])
            lower = float(bounds[index - 1]) if index > 0 else 0.0
            upper = float(bounds[index])
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(bounds[-1])  # unreachable with non-negative counts; keeps the type checker honest
