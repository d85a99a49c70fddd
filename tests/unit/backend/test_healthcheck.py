"""The container health check finds the service the way the service's settings describe it."""

from __future__ import annotations

import pytest

from backend.app.healthcheck import check_liveness, liveness_url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000/health/live"),
        ("::", "http://127.0.0.1:8000/health/live"),
        ("127.0.0.1", "http://127.0.0.1:8000/health/live"),
        ("::1", "http://[::1]:8000/health/live"),
        ("10.0.0.5", "http://10.0.0.5:8000/health/live"),
    ],
)
def test_liveness_url_uses_loopback_when_listening_everywhere(host: str, expected: str) -> None:
    assert liveness_url(host, 8000) == expected


def test_unreachable_service_is_unhealthy_with_the_reason() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    healthy, detail = check_liveness(liveness_url("127.0.0.1", closed_port), timeout=1)
    assert healthy is False
    assert "ConnectError" in detail
