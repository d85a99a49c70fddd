"""Counting the database work: every statement and transaction an engine sends, split by whether
a run's execution sent it (the runner binds the run's id to its task) or anything else.

The counts are what the per-run budget is about (``bench/runs_throughput.py`` prints them per
run, a test holds them under a budget): round trips, not time, so they do not depend on the
machine. A listener costs a counter increment per statement.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.observability import metrics
from backend.observability.logs import RUN_ID

_STATEMENTS = {source: metrics.DB_STATEMENTS.labels(source) for source in ("run", "other")}
_TRANSACTIONS = {source: metrics.DB_TRANSACTIONS.labels(source) for source in ("run", "other")}


def _source() -> str:
    return "other" if RUN_ID.get() is None else "run"


def _on_statement(*_: Any) -> None:
    _STATEMENTS[_source()].inc()


def _on_begin(*_: Any) -> None:
    _TRANSACTIONS[_source()].inc()


def count_statements(count: int) -> None:
    """Count statements sent past the engine (straight through the driver)."""
    _STATEMENTS[_source()].inc(count)


def count_transaction() -> None:
    """Count a transaction begun past the engine (straight through the driver)."""
    _TRANSACTIONS[_source()].inc()


def count_database_work(engine: AsyncEngine) -> None:
    """Count ``engine``'s statements and transactions in ``mgx_db_statements`` and
    ``mgx_db_transactions``."""
    sync_engine = engine.sync_engine
    if not event.contains(sync_engine, "before_cursor_execute", _on_statement):
        event.listen(sync_engine, "before_cursor_execute", _on_statement)
        event.listen(sync_engine, "begin", _on_begin)
