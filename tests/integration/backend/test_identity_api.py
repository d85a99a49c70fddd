"""GET /whoami: the caller's key name and role, or open access."""

from __future__ import annotations

from tests.integration.backend.test_tasks_api import assert_problem

KEYS = "alice:alice-whoami-key-1,ops:ops-whoami-key-2:admin"


async def test_whoami_names_the_key_and_its_role(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app(api_keys=KEYS, runner_workers=0)
    alice = await client.get("/whoami", headers={"X-API-Key": "alice-whoami-key-1"})
    assert alice.status_code == 200
    assert alice.json() == {"access": "api_keys", "name": "alice", "admin": False}
    ops = await client.get("/whoami", headers={"Authorization": "Bearer ops-whoami-key-2"})
    assert ops.json() == {"access": "api_keys", "name": "ops", "admin": True}
    assert_problem(await client.get("/whoami"), 401)
    assert_problem(await client.get("/whoami", headers={"X-API-Key": "alice-whoami-key-"}), 401)


async def test_whoami_in_open_mode_says_so(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app(runner_workers=0)
    assert (await client.get("/whoami")).json() == {"access": "open", "name": None, "admin": True}
