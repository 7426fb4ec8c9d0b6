"""The bench's arithmetic: percentiles of latency samples, and throughput over a timed run.

Every latency figure is a median with its p99, in milliseconds, computed from per-request samples in
seconds. Percentiles use linear interpolation between the closest ranks (numpy's default), so that a
small sample gives a stable answer.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, interpolated linearly; ValueError when empty."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class Latency:
    """Per-request latencies summarised: count, median, p99 and mean, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summarise samples given in seconds."""
        if not seconds:
            raise ValueError("no latency samples")
        return cls(n=len(seconds), p50_ms=percentile(seconds, 50) * 1000, p99_ms=percentile(seconds, 99) * 1000,
                   mean_ms=sum(seconds) / len(seconds) * 1000)

    def to_dict(self) -> dict[str, Any]:
        """Rounded figures for the JSON report."""
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Throughput:
    """A timed run: requests answered, errors and lost among them, wall time, and the rate of answers."""

    requests: int
    seconds: float
    errors: int = 0
    lost: int = 0
    concurrency: int = 1

    @property
    def rate(self) -> float:
        """Answered requests per second (errors count as answered; lost ones do not)."""
        answered = self.requests - self.lost
        return answered / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The figures for the JSON report, the rate included."""
        return {"concurrency": self.concurrency, "requests": self.requests, "seconds": round(self.seconds, 4),
                "errors": self.errors, "lost": self.lost, "rate": round(self.rate, 1)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


@dataclass
class Samples:
    """The raw results of timed runs, pooled across rounds: per-request latencies (s), wall time (s),
    requests sent, wrong answers and lost requests."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    lost: int = 0

    def add(self, other: Samples) -> Samples:
        """Pool ``other`` into this one (in place); returns self."""
        self.latencies.extend(other.latencies)
        self.seconds += other.seconds
        self.requests += other.requests
        self.errors += other.errors
        self.lost += other.lost
        return self

    def latency(self) -> Latency:
        """The latency summary."""
        return Latency.of(self.latencies)

    def throughput(self, concurrency: int) -> Throughput:
        """The throughput over the pooled wall time."""
        return Throughput(requests=self.requests, seconds=self.seconds, errors=self.errors, lost=self.lost,
                          concurrency=concurrency)
