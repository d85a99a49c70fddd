"""``python -m backend.worker``: execute runs from the shared queue without serving the API."""

from __future__ import annotations

import sys

from backend.app import startup
from backend.config import SettingsError, get_settings
from backend.observability.logs import uvicorn_log_config
from backend.worker.settings import check_worker_settings


def main() -> None:
    import uvicorn

    try:
        settings = get_settings()
        check_worker_settings(settings)  # before the app's modules load: a mistake is said at once
        from backend.worker.app import create_worker_app

        app = create_worker_app(settings)
        # The probes' socket, bound first so a port in use is said before anything starts.
        listening = startup.bind_listening_socket(settings.api_host, settings.api_port)
    except SettingsError as exc:
        print(f"mgx-agent-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        # One process per worker: scale by starting more of them (replicas), not uvicorn workers.
        uvicorn.run(
            app,
            fd=listening.fileno(),
            log_level=settings.log_level.lower(),
            log_config=uvicorn_log_config(settings.log_level, settings.log_format),
            access_log=False,
        )
    finally:
        listening.close()


if __name__ == "__main__":
    main()
