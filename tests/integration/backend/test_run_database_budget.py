"""A regression guard on the database work of one run: the statements and transactions its
execution sends (counted by ``backend.observability.database``, not timed) stay under a budget,
on SQLite and PostgreSQL. A change that adds round trips per reply shows up here first."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.integration.backend.conftest import start_run, wait_for_status

# One demo run with its plan approved by the task: 5 model replies (analyse, plan, code, tests,
# review). Measured 2026-12-01: 36 statements on SQLite, 26 on PostgreSQL, 8 transactions on
# both (docs/architecture.md, "Database work per run"); the claim is the dispatcher's, not counted.
STATEMENT_BUDGET = 40
TRANSACTION_BUDGET = 10


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", {"source": "run"}) or 0.0


async def test_a_run_stays_within_its_statement_and_transaction_budget(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app()
    statements, transactions = counted("mgx_db_statements"), counted("mgx_db_transactions")
    _, run = await start_run(client, {"auto_approve_plan": True})
    await wait_for_status(client, run["id"], "completed")
    used_statements = counted("mgx_db_statements") - statements
    used_transactions = counted("mgx_db_transactions") - transactions
    print(f"run {run['id']}: {used_statements:.0f} statements, {used_transactions:.0f} transactions")
    assert 0 < used_statements <= STATEMENT_BUDGET
    assert 0 < used_transactions <= TRANSACTION_BUDGET
