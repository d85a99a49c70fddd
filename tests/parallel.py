"""How the suite runs in parallel (pytest-xdist, ``-n auto --dist loadfile`` in pyproject.toml):
how many workers ``-n auto`` starts, and which test files run on the same worker. The hooks are
registered by ``tests/conftest.py``.

Each worker has its own PostgreSQL database (a session fixture) and Redis database
(``tests/services.py``); servers bind free ports and write below ``tmp_path``.
"""

from __future__ import annotations

import os

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling

# Most of a test's time goes to servers and subprocesses it waits for, so two workers per CPU
# keep the CPUs busy; more than four would mostly add start-up work and database connections.
MAX_WORKERS = 4

# Test files that use one server from a session- or package-scoped fixture: run on one worker,
# the server starts once instead of once on every worker that runs one of them.
SHARED_SERVERS = {
    "tests/e2e/mgx_cli/": "demo_api_server",
    "tests/e2e/test_openapi_examples.py": "demo_api_server",
    "tests/e2e/test_readme_examples.py": "demo_api_server",
    "tests/e2e/protocols/": "protocols server",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """The whole suite or a directory runs in workers; named test files or tests run in this
    process, which is quicker than starting workers for them."""
    if config.args and all(arg.partition("::")[0].endswith(".py") for arg in config.args):
        return 0
    return min(MAX_WORKERS, 2 * len(os.sched_getaffinity(0)))


class FileScheduling(LoadFileScheduling):
    """``--dist loadfile``: a file's tests run on one worker (its module fixtures start once), in
    collection order with ``--no-loadscope-reorder`` (the slow end-to-end files first, so none
    is left for the end); the files of one shared server are one unit."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return next((unit for prefix, unit in SHARED_SERVERS.items() if path.startswith(prefix)), path)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> FileScheduling | None:
    return FileScheduling(config, log) if config.getvalue("dist") == "loadfile" else None
