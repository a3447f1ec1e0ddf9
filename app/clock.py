"""The one clock every time-dependent rule reads.

Tests freeze or move it; production reads the wall clock. Jobs take ``now`` as an argument and
default to this clock, so a test can run a job "tomorrow" without waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        if self._frozen is not None:
            return self._frozen
        return datetime.now(UTC)

    def freeze(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("the clock needs an aware datetime")
        self._frozen = at

    def advance(self, delta: timedelta) -> datetime:
        self.freeze(self.now() + delta)
        return self.now()

    def reset(self) -> None:
        self._frozen = None


clock = Clock()
