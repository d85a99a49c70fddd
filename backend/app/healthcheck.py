"""Container health check: ``python -m backend.app.healthcheck`` exits 0 when the service in this
container answers ``GET /health/live`` with 200, and 1 otherwise (the Docker HEALTHCHECK
contract). It finds the service through the same settings (``API_HOST``, ``API_PORT``)."""

from __future__ import annotations

import sys

import httpx

from backend.config import SettingsError, load_settings

LIVENESS_PATH = "/health/live"
TIMEOUT_SECONDS = 2.0
_ANY_ADDRESS = {"", "0.0.0.0", "::"}


def liveness_url(api_host: str, api_port: int) -> str:
    """Where the service answers locally: loopback when it listens on every address."""
    host = "127.0.0.1" if api_host in _ANY_ADDRESS else api_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{api_port}{LIVENESS_PATH}"


def check_liveness(url: str, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"{url}: {exc.__class__.__name__}: {exc}"
    return response.status_code == 200, f"{url}: {response.status_code}"


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    healthy, detail = check_liveness(liveness_url(settings.api_host, settings.api_port))
    print(f"{'healthy' if healthy else 'unhealthy'}: {detail}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
