"""A regression guard on the database work of one run: the statements and transactions its
execution sends (counted by ``backend.observability.database``, not timed) stay under a budget,
on SQLite and PostgreSQL. A change that adds round trips per reply shows up here first."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.integration.backend.conftest import start_run, wait_for_status

# One demo run with its plan approved by the task: 5 model replies (analyse, plan, code, tests,
# review) and 2 status changes of its execution (running, completed): the target is one
# transaction per reply plus one per status change, 7. Measured 2026-12-01 after the journal
# carried the status changes: 22 statements and 5 transactions on SQLite, 15 and 4 on PostgreSQL
# (a fake model without latency, so neighbouring bursts merge; docs/architecture.md, "Database
# work per run"). The claim is the dispatcher's (up to 16 runs a transaction), not counted.
STATEMENT_BUDGET = 26
TRANSACTION_BUDGET = 7


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
