"""Consumer lanes: classes of job timeout, each served by consumers whose run is long enough for it.

A serverless consumer run is bounded (a Lambda lives at most 15 minutes), so a deployment runs one
consumer function per lane: say `standard` for jobs up to 45 s and `long` for jobs up to 14 minutes.
A job belongs to the smallest lane its timeout fits; a timeout that fits no lane is refused at submit
(and a job type whose timeout fits none is refused at start-up), so nothing accepted can starve.
`jobq worker` and `jobq dev` serve every lane: a long-lived process can run any timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ValidationError

# The lanes serverless.yml deploys: job timeouts (seconds) that each consumer function's run can hold.
DEFAULT_LANES: dict[str, float] = {"standard": 45.0, "long": 840.0}


@dataclass(frozen=True)
class Lanes:
    limits: tuple[tuple[str, float], ...]  # (name, longest job timeout in seconds), shortest first

    @classmethod
    def of(cls, limits: Mapping[str, float]) -> Lanes:
        if not limits:
            raise ValueError("configure at least one lane")
        for name, limit in limits.items():
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"lane names are letters, digits, - and _: {name!r}")
            if not limit > 0:
                raise ValueError(f"lane {name!r} needs a positive timeout limit")
        return cls(tuple(sorted(limits.items(), key=lambda item: item[1])))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.limits]

    @property
    def longest(self) -> tuple[str, float]:
        return self.limits[-1]

    def limit(self, lane: str) -> float:
        for name, limit in self.limits:
            if name == lane:
                return limit
        raise ValueError(f"unknown lane {lane!r}; configured: {', '.join(self.names)}")

    def lane_for(self, timeout: float) -> str | None:
        """The smallest lane whose limit holds `timeout`; None when no lane does."""
        for name, limit in self.limits:
            if timeout <= limit:
                return name
        return None

    def check(self, timeout: float, *, field: str = "timeout_seconds") -> str:
        """The lane of a job's timeout, or a ValidationError that names the longest lane."""
        lane = self.lane_for(timeout)
        if lane is None:
            name, limit = self.longest
            raise ValidationError(
                f"a timeout of {timeout:g} s fits no consumer lane; the longest ({name}) runs jobs of "
                f"up to {limit:g} s (JOBQ_LANES)",
                field=field,
            )
        return lane
