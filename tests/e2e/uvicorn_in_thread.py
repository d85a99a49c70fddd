"""The app under a real uvicorn server on a loopback port, in a thread of the test process:
real sockets and uvicorn's own options, without the seconds a server subprocess takes to start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.e2e.conftest import free_port

START_TIMEOUT_SECONDS = 20.0


@contextmanager
def serving(app: Any, **options: Any) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **options)
    server = uvicorn.Server(config)  # off the main thread, uvicorn leaves signal handlers alone
    thread = threading.Thread(target=server.run, name="uvicorn-in-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
