"""One log line when a dependency goes away and one when it is back, instead of a traceback per
failed attempt.

The runner's loops retry every second or two and every request of an outage fails the same
way: logging each failure buried the cause under thousands of identical lines. A
``DependencyWatch`` logs the first failure (with its cause, no traceback), counts the rest, and
logs once when an attempt succeeds again, with the count and how long it lasted. Callers report
only outages here (``backend.db.failures.is_database_unavailable``); a bug keeps its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class DependencyWatch:
    def __init__(self, name: str, logger: logging.Logger, describe: Callable[[BaseException], str] = str) -> None:
        self.name = name
        self.logger = logger
        self.describe = describe
        self._down_since: float | None = None
        self._failures = 0
        self.last_cause: str | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException, doing: str) -> None:
        self.last_cause = self.describe(exc)
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.logger.warning(
                "%s unavailable while %s: %s; retrying quietly until it answers", self.name, doing, self.last_cause
            )

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        seconds = time.monotonic() - self._down_since
        failures, self._failures, self._down_since = self._failures, 0, None
        self.logger.warning("%s is back after %.1fs (%d failed attempt(s) meanwhile)", self.name, seconds, failures)
