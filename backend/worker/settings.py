"""What a worker needs of the shared settings beyond what the API checks."""

from __future__ import annotations

from backend.config import Settings, SettingsError


def check_worker_settings(settings: Settings) -> None:
    """A worker exists to execute runs: one with no runner slot would only hold a connection."""
    if settings.runner_workers < 1:
        raise SettingsError(
            "invalid configuration: RUNNER_WORKERS: 0 leaves a worker nothing to do; set it to the "
            "number of runs this worker executes at a time (API replicas are the ones with 0)"
        )
