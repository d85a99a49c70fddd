"""The protocols' settings: the MCP endpoint's Host/Origin allowlist, the public URL the agent
card advertises; and building the MCP SDK's server leaves the service's logging alone."""

from __future__ import annotations

import logging

import pytest

from backend.config import load_settings
from backend.protocols.mcp.server import build_mcp_server, transport_security


def test_by_default_only_loopback_hosts_and_origins_are_answered() -> None:
    security = transport_security(load_settings(_env_file=None))
    assert security.enable_dns_rebinding_protection
    assert "localhost:*" in security.allowed_hosts and "127.0.0.1:*" in security.allowed_hosts
    assert all("127.0.0.1" in host or "localhost" in host or "::1" in host for host in security.allowed_hosts)
    assert "http://localhost:*" in security.allowed_origins


def test_hosts_and_origins_come_from_the_environment_with_the_cors_origins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MCP_ALLOWED_HOSTS", "mgx.example.com, mgx.example.com:*")
    monkeypatch.setenv("MCP_ALLOWED_ORIGINS", "https://ide.example.com")
    monkeypatch.setenv("CORS_ORIGINS", "https://console.example.com")
    security = transport_security(load_settings(_env_file=None))
    assert security.allowed_hosts == ["mgx.example.com", "mgx.example.com:*"]
    assert security.allowed_origins == ["https://ide.example.com", "https://console.example.com"]


def test_a_star_host_switches_the_check_off_for_a_proxy_that_sets_host(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MCP_ALLOWED_HOSTS", "*")
    assert not transport_security(load_settings(_env_file=None)).enable_dns_rebinding_protection


def test_building_the_server_installs_no_log_handler() -> None:
    # On a root logger without handlers (a process before the service configured logging), the
    # SDK's basicConfig would install its own.
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    root.handlers[:] = []
    try:
        build_mcp_server()
        assert (root.handlers, root.level) == ([], saved[1])
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_the_public_url_must_be_an_http_url() -> None:
    from backend.config import SettingsError

    assert load_settings(_env_file=None, api_public_url="https://mgx.example.com/").public_url == "https://mgx.example.com"
    assert load_settings(_env_file=None, api_host="0.0.0.0", api_port=9000).public_url == "http://localhost:9000"
    with pytest.raises(SettingsError, match="API_PUBLIC_URL"):
        load_settings(_env_file=None, api_public_url="mgx.example.com")
