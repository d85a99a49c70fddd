"""The service's Prometheus metrics and their rendering for ``GET /metrics``.

Two kinds of figures:

- Counters and histograms of things that happen (requests, phases, LLM calls, finished runs),
  plus the live-subscriber gauge, recorded in the process where they happen. With several
  uvicorn workers (``API_WORKERS`` > 1) prometheus-client's multiprocess mode is on: each worker
  writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (prepared by ``python -m
  backend.app.main`` before the workers start) and a scrape, answered by any worker, adds up
  every worker's files.
- Gauges of database state (runs by status, queue depth, oldest queued run), read at scrape time
  by the worker answering it and emitted once, never through the files, so they are not
  multiplied by the number of workers. They describe the shared database: across replicas, take
  their ``max``, not their sum.

Whether multiprocess mode is on is decided by prometheus-client when it is first imported
(``PROMETHEUS_MULTIPROC_DIR`` set or not); ``MULTIPROCESS`` reflects that decision.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, MutableMapping
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client import values as prometheus_values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

logger = logging.getLogger("backend.metrics")

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = prometheus_values.ValueClass is not prometheus_values.MutexValue
# Files of live-mode gauges, one per process: gauge_livesum_<pid>.db and the like.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")

# The ``*_created`` timestamp series double the output and no dashboard reads them.
disable_created_metrics()

HTTP_REQUESTS = Counter(
    "mgx_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "mgx_http_request_duration_seconds",
    "Time to answer HTTP requests, by method and route template (event streams: their lifetime).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RUN_DURATION = Histogram(
    "mgx_run_duration_seconds",
    "Wall time from a run's creation to its terminal status (queue and approval waits included), "
    "by final status.",
    ["status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
)
PHASE_DURATION = Histogram(
    "mgx_run_phase_duration_seconds",
    "Time spent in each finished run phase (planning, coding, testing, verifying, reviewing, revising).",
    ["phase"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
LLM_CALLS = Counter(
    "mgx_llm_calls",
    "LLM calls made (answers served from the cache excluded), by model and role.",
    ["model", "role"],
)
LLM_TOKENS = Counter(
    "mgx_llm_tokens",
    "LLM tokens used, by model, role and kind (prompt or completion).",
    ["model", "role", "kind"],
)
LLM_COST = Counter(
    "mgx_llm_cost_usd",
    "LLM cost in US dollars from the price table, by model and role (models without a price count 0).",
    ["model", "role"],
)
LLM_CACHE_LOOKUPS = Counter(
    "mgx_llm_cache_lookups",
    "LLM response cache lookups, by role and result (hit or miss).",
    ["role", "result"],
)
DB_STATEMENTS = Counter(
    "mgx_db_statements",
    "SQL statements sent to the database (one round trip each), by source: run (a run's "
    "execution, claim excluded) or other (requests, claims, heartbeats, the reaper, probes).",
    ["source"],
)
DB_TRANSACTIONS = Counter(
    "mgx_db_transactions",
    "Database transactions begun, by source (as for mgx_db_statements).",
    ["source"],
)
EVENT_SUBSCRIBERS = Gauge(
    "mgx_event_subscribers",
    "Open live event subscriptions (SSE streams and WebSockets).",
    multiprocess_mode="livesum",
)


class _Families:
    """A collector of metric families gathered before the scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(scrape_time_families: Iterable[Metric], accept: str | None) -> tuple[bytes, str]:
    """Every metric, this process's (or all workers', in multiprocess mode) then
    ``scrape_time_families``, in the format the scraper's ``Accept`` asks for: the Prometheus text
    format by default, OpenMetrics when requested. Returns (body, media type)."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        MultiProcessCollector(registry)
        families: list[Metric] = []
    else:
        # The default registry: ours, plus the process and Python collectors.
        families = list(REGISTRY.collect())
    registry.register(_Families([*families, *scrape_time_families]))
    encode, media_type = choose_encoder(accept or "")
    return encode(registry), media_type


def prepare_multiprocess_dir(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Before uvicorn starts its workers: point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory.

    A directory the operator set is emptied of old metric files (the values of a previous run
    would otherwise be added to this one's); without one, a fresh temporary directory is created
    and returned so the caller removes it at exit.
    """
    configured = environ.get(MULTIPROC_DIR_VARIABLE)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    directory = Path(tempfile.mkdtemp(prefix="mgx-metrics-"))
    environ[MULTIPROC_DIR_VARIABLE] = str(directory)
    return directory


def remove_multiprocess_dir(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (crashed and replaced), which would
    otherwise keep counting in the sum. Their counters and histograms stay: they did happen."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not MULTIPROCESS or not directory:
        return
    files = (_LIVE_GAUGE_FILE.fullmatch(path.name) for path in Path(directory).glob("gauge_live*.db"))
    for pid in {int(match.group(1)) for match in files if match}:
        if pid != os.getpid() and not _process_exists(pid):
            mark_process_dead(pid, directory)
            logger.debug("dropped the live gauges of worker %d, which is gone", pid)


def forget_this_worker() -> None:
    """At shutdown: this process's live gauges leave the sum."""
    if MULTIPROCESS:
        mark_process_dead(os.getpid())


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
