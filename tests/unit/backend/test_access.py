"""API keys: the ``API_KEYS`` format, identifying a caller, ownership rules, the open-mode guard
and keeping ``access_token`` out of log lines."""

from __future__ import annotations

import hmac
import logging

import pytest

from backend import access
from backend.access import (
    KeyRing,
    Principal,
    can_see,
    idempotency_scope,
    owner_filter,
    owner_of_new,
    parse_api_keys,
)
from backend.app.auth import AccessTokenRedactor, ensure_not_open_on_network, redact_access_tokens
from backend.config import SettingsError, load_settings

ALICE = Principal("alice", admin=False)
OPS = Principal("ops", admin=True)


class TestApiKeysSetting:
    def test_entries_parse_with_names_and_admin_flags(self) -> None:
        settings = load_settings(_env_file=None, api_keys=" alice:k-alice , ops.team:k-ops:admin,")
        entries = settings.api_key_entries()
        assert [(entry.name, entry.admin) for entry in entries] == [("alice", False), ("ops.team", True)]
        assert "k-alice" not in repr(settings) and "k-alice" not in repr(entries)

    def test_blank_means_open(self) -> None:
        settings = load_settings(_env_file=None, api_keys="  ")
        assert settings.api_keys is None
        assert settings.api_key_entries() == []

    @pytest.mark.parametrize(
        ("value", "complaint"),
        [
            ("alice:sekrit-1,alice:sekrit-2", "used twice"),
            ("alice:sekrit-1,bob:sekrit-1", "same as another"),
            ("alice:", "has no key"),
            ("alice:sekrit-1:root", "may only be 'admin'"),
            ("al ice:sekrit-1", "name must be"),
            (":sekrit-1", "name must be"),
            ("sekrit-1", "is not name:key"),
            (",", "lists no key"),
        ],
    )
    def test_invalid_entries_are_one_line_naming_api_keys_without_the_key(
        self, value: str, complaint: str
    ) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings(_env_file=None, api_keys=value)
        message = str(caught.value)
        assert message.startswith("invalid configuration: API_KEYS: ")
        assert complaint in message
        assert "\n" not in message
        assert "sekrit" not in message


class TestKeyRing:
    ring = KeyRing(parse_api_keys("alice:alice-key-0001,ops:ops-key-0002:admin"))

    def test_identifies_each_key_and_nothing_else(self) -> None:
        assert self.ring.identify("alice-key-0001") == ALICE
        assert self.ring.identify("ops-key-0002") == OPS
        for wrong in ("", "alice-key-000", "alice-key-00011", "ALICE-KEY-0001", "alice"):
            assert self.ring.identify(wrong) is None, wrong

    def test_every_key_is_compared_even_after_a_match(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[tuple[bytes, bytes]] = []
        compare = hmac.compare_digest

        def counting_compare(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return compare(a, b)

        monkeypatch.setattr(access.hmac, "compare_digest", counting_compare)
        assert self.ring.identify("alice-key-0001") == ALICE  # the first key matches
        assert len(calls) == 2
        assert {len(a) for a, _ in calls} == {32}  # fixed-length digests, not the raw key

    def test_counts(self) -> None:
        assert (self.ring.enabled, len(self.ring), self.ring.admin_count) == (True, 2, 1)
        assert not KeyRing().enabled


class TestOwnership:
    def test_non_admin_keys_see_only_their_own(self) -> None:
        assert owner_filter(ALICE) == "alice"
        assert can_see(ALICE, "alice")
        assert not can_see(ALICE, "bob")
        assert not can_see(ALICE, None)  # created while the service ran open

    def test_admin_keys_and_open_mode_see_everything(self) -> None:
        for principal in (OPS, None):
            assert owner_filter(principal) is None
            assert can_see(principal, "bob") and can_see(principal, None)

    def test_new_resources_belong_to_the_caller(self) -> None:
        assert owner_of_new(ALICE) == "alice"
        assert owner_of_new(OPS) == "ops"
        assert owner_of_new(None) is None

    def test_idempotency_scopes_differ_per_caller(self) -> None:
        scopes = {idempotency_scope("POST /tasks/", principal) for principal in (ALICE, OPS, None)}
        assert len(scopes) == 3
        assert idempotency_scope("POST /tasks/", None) == "POST /tasks/"  # open mode keeps the plain scope


class TestOpenModeGuard:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
    def test_open_on_loopback_is_allowed(self, host: str) -> None:
        ensure_not_open_on_network(load_settings(_env_file=None, api_host=host))

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.internal"])
    def test_open_on_a_network_address_is_refused(self, host: str) -> None:
        with pytest.raises(SettingsError) as caught:
            ensure_not_open_on_network(load_settings(_env_file=None, api_host=host))
        message = str(caught.value)
        assert "API_KEYS" in message and "ALLOW_OPEN_ACCESS" in message and "\n" not in message

    def test_keys_or_explicit_permission_allow_a_network_address(self) -> None:
        ensure_not_open_on_network(load_settings(_env_file=None, api_host="0.0.0.0", api_keys="a:b"))
        ensure_not_open_on_network(load_settings(_env_file=None, api_host="0.0.0.0", allow_open_access=True))


class TestAccessTokenRedaction:
    def test_query_values_are_replaced(self) -> None:
        text = '"GET /runs/1/events?after=3&access_token=k-123&x=1 HTTP/1.1" 200'
        assert redact_access_tokens(text) == '"GET /runs/1/events?after=3&access_token=[redacted]&x=1 HTTP/1.1" 200'
        assert "k-123" not in redact_access_tokens("/ws/runs/1?access%5Ftoken=k-123")

    def test_uvicorn_style_records_are_scrubbed(self) -> None:
        record = logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", "/runs/1/events?access_token=k-123", "1.1", 200),
            None,
        )
        assert AccessTokenRedactor().filter(record) is True
        assert "k-123" not in record.getMessage()
        assert "access_token=[redacted]" in record.getMessage()
