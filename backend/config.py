"""Service settings: one ``Settings`` object read from the environment, then ``.env``, then defaults.

Invalid values stop start-up with one line naming the variable (``SettingsError``); secrets are
``SecretStr`` and never rendered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from mgx_agent.config import check_sandbox_mode
from mgx_agent.llm.config import LLMConfig
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from backend.access import ApiKey, parse_api_keys

DEFAULT_CORS_ORIGINS = [
    "http://localhost:3000",
    "http://localhost:8000",
    "http://127.0.0.1:3000",
    "http://127.0.0.1:8000",
]

# Loopback only, in every spelling, on any port.
DEFAULT_MCP_HOSTS = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
DEFAULT_MCP_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]

# Drivers the service runs on; other spellings of the same databases are normalised to these.
_DRIVER_ALIASES = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(Exception):
    """The configuration is invalid; the message names each offending variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    # API server
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_reload: bool = False
    api_workers: int = Field(1, ge=1, le=64)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    # The URL clients reach the service at, as the A2A agent card advertises it (behind a proxy:
    # the proxy's URL); default http://API_HOST:API_PORT, with localhost for a wildcard host.
    api_public_url: str | None = None

    # Authentication: comma-separated name:key[:admin] entries; empty runs the API open.
    api_keys: SecretStr | None = None
    allow_open_access: bool = False
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: comma-separated addresses
    # or networks, "*" for any; empty (the default) trusts none, so a client cannot pick the
    # address its rate limit is counted for.
    forwarded_allow_ips: str = ""

    # MCP at /mcp: the Host and Origin values it answers (DNS rebinding protection); host "*"
    # switches the check off behind a proxy that sets Host. CORS_ORIGINS are allowed origins too.
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_MCP_HOSTS))
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_MCP_ORIGINS))

    # Team defaults (tasks may override some per task)
    mgx_max_rounds: int = Field(5, ge=1, le=20)
    mgx_max_revision_rounds: int = Field(2, ge=0, le=5)
    mgx_max_memory_size: int = Field(50, ge=10, le=500)
    mgx_enable_caching: bool = True
    mgx_cache_backend: Literal["none", "memory", "redis"] = "memory"
    mgx_cache_max_entries: int = Field(1024, ge=1, le=100_000)
    mgx_cache_ttl_seconds: int = Field(3600, ge=60, le=86_400)
    # Sandbox: auto | bwrap | unsafe-subprocess | off (see README "Sandbox")
    mgx_sandbox: Literal["auto", "bwrap", "unsafe-subprocess", "off"] = "auto"
    mgx_sandbox_timeout_seconds: float = Field(60, gt=0, le=3600)
    mgx_sandbox_memory_mb: int = Field(512, ge=64, le=65_536)
    mgx_sandbox_max_processes: int = Field(64, ge=4, le=4096)
    mgx_sandbox_disk_mb: int = Field(256, ge=8, le=65_536)
    mgx_sandbox_bwrap: str | None = None
    mgx_sandbox_uid: int = Field(65534, ge=1, le=2**31 - 2)
    # Engine of runs whose task does not pick one (see README "Engines"); the metagpt engine runs
    # in MetaGPT's own interpreter (scripts/install-metagpt.sh prints MGX_METAGPT_PYTHON).
    mgx_engine: Literal["native", "metagpt"] = "native"
    mgx_metagpt_python: str | None = None

    # Database: DATABASE_URL wins; else DB_HOST selects PostgreSQL; else embedded SQLite.
    database_url: SecretStr | None = None
    db_host: str | None = None
    db_port: int = Field(5432, ge=1, le=65535)
    db_user: str = "postgres"
    db_password: SecretStr = SecretStr("")
    db_name: str = "mgx_agent"
    db_pool_size: int = Field(10, ge=1, le=100)
    db_max_overflow: int = Field(20, ge=0, le=200)
    db_auto_migrate: bool | None = None
    sqlite_path: Path = Path("data/mgx.db")

    redis_url: SecretStr | None = None

    log_level: LogLevel = "INFO"
    # text: one human-readable line per record; json: one JSON object per line (log collectors)
    log_format: Literal["text", "json"] = "text"
    debug: bool = False

    idempotency_ttl_seconds: int = Field(86_400, ge=60, le=30 * 86_400)

    # Background runner
    runner_workers: int = Field(2, ge=0, le=1000)
    runner_max_attempts: int = Field(3, ge=1, le=20)
    runner_shutdown_grace_seconds: float = Field(20, ge=0, le=3600)
    runner_lease_seconds: float = Field(30, ge=2, le=3600)
    runner_heartbeat_seconds: float = Field(1, gt=0, le=600)
    runner_poll_seconds: float = Field(2, gt=0, le=60)
    mgx_approval_ttl_seconds: int = Field(86_400, ge=1, le=30 * 86_400)

    # Live events (SSE and WebSocket)
    mgx_stream_deltas: bool = True
    events_keepalive_seconds: float = Field(15, gt=0, le=300)
    events_poll_seconds: float = Field(0.5, gt=0, le=60)
    events_subscriber_queue: int = Field(256, ge=1, le=100_000)

    # Request limits (per API key, or per client address when the API runs open)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)
    rate_limit_per_minute: int = Field(600, ge=0, le=1_000_000)  # sustained rate; 0 switches the limit off
    rate_limit_burst: int = Field(300, ge=1, le=1_000_000)
    max_streams_per_client: int = Field(16, ge=0, le=100_000)  # open SSE + WebSocket streams; 0: no cap

    @field_validator("mgx_sandbox", mode="before")
    @classmethod
    def _known_sandbox_mode(cls, value: Any) -> Any:
        return check_sandbox_mode(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", "mcp_allowed_hosts", "mcp_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator(
        "db_host", "database_url", "redis_url", "db_auto_migrate", "api_keys", "api_public_url",
        "mgx_sandbox_bwrap", "mgx_metagpt_python", mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value.strip()):
            raise ValueError("must be the http:// or https:// URL clients reach the service at, e.g. https://mgx.example.com")
        return None if value is None else value.strip()

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _normalise_database_url(value.get_secret_value())
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not parse_api_keys(value.get_secret_value()):
            raise ValueError("lists no key (entries are name:key[:admin], comma-separated)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = value.get_secret_value().split("://", 1)[0]
            if scheme not in {"redis", "rediss", "unix"} or "://" not in value.get_secret_value():
                raise ValueError("must look like redis://host:6379/0")
        return value

    @model_validator(mode="after")
    def _resolve_auto_migrate(self) -> Settings:
        if self.db_auto_migrate is None:
            self.db_auto_migrate = self.database_dialect == "sqlite"
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.runner_heartbeat_seconds * 2 > self.runner_lease_seconds:
            raise ValueError(
                "RUNNER_HEARTBEAT_SECONDS must be at most half of RUNNER_LEASE_SECONDS, or leases expire between beats"
            )
        return self

    @property
    def sqlalchemy_url(self) -> URL:
        """The async SQLAlchemy URL, with the password inside (never log it: use ``safe_database_url``)."""
        if self.database_url is not None:
            return _normalise_database_url(self.database_url.get_secret_value())
        if self.db_host:
            return URL.create(
                "postgresql+asyncpg",
                username=self.db_user,
                password=self.db_password.get_secret_value() or None,
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
            )
        return URL.create("sqlite+aiosqlite", database=str(self.sqlite_path))

    @property
    def database_dialect(self) -> str:
        return self.sqlalchemy_url.get_backend_name()

    @property
    def safe_database_url(self) -> str:
        return self.sqlalchemy_url.render_as_string(hide_password=True)

    def api_key_entries(self) -> list[ApiKey]:
        """The parsed ``API_KEYS`` (digests only); empty when the API runs open."""
        return [] if self.api_keys is None else parse_api_keys(self.api_keys.get_secret_value())

    @property
    def public_url(self) -> str:
        """``API_PUBLIC_URL`` without a trailing slash, or the URL the server listens at."""
        if self.api_public_url:
            return self.api_public_url.rstrip("/")
        host = "localhost" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"

    @property
    def host_is_loopback(self) -> bool:
        if self.api_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.api_host).is_loopback
        except ValueError:
            return False


def _normalise_database_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ValueError("is not a valid database URL (e.g. postgresql://user@host:5432/db)") from exc
    driver = _DRIVER_ALIASES.get(url.drivername)
    if driver is None:
        raise ValueError(f"uses unsupported driver {url.drivername!r}: use postgresql:// or sqlite://")
    url = url.set(drivername=driver)
    if driver.startswith("postgresql") and not url.host:
        raise ValueError("has no host")
    return url


def _describe(error: ValidationError, prefix: str = "") -> str:
    lines = []
    for item in error.errors():
        variable = prefix + ("_".join(str(part) for part in item["loc"][:1]).upper() or "settings")
        message = item["msg"].removeprefix("Value error, ")
        inner = ".".join(str(part) for part in item["loc"][1:])  # where inside a JSON value
        lines.append(f"{variable}: {inner + ': ' if inner else ''}{message}")
    return "; ".join(lines)


_SOURCE_FIELD = re.compile(r'field "(?P<field>[^"]+)"')


def _describe_source_error(error: SourceError, prefix: str = "") -> str:
    """A value pydantic-settings could not decode before validation (JSON settings): name the
    variable, not the internal field, and say what the decoder said."""
    match = _SOURCE_FIELD.search(str(error))
    variable = prefix + (match["field"].upper() if match else "settings")
    cause = error.__cause__
    reason = f"is not valid JSON ({cause})" if isinstance(cause, json.JSONDecodeError) else str(cause or error)
    return f"{variable}: {reason}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation errors into one ``SettingsError`` line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {_describe(exc)}") from None
    except SourceError as exc:
        raise SettingsError(f"invalid configuration: {_describe_source_error(exc)}") from None


def load_llm_config(**overrides: Any) -> LLMConfig:
    """The LLM provider settings (``MGX_LLM_*``), from the environment, then ``.env``."""
    try:
        return LLMConfig(**{"_env_file": ".env", **overrides})
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {_describe(exc, 'MGX_LLM_')}") from None
    except SourceError as exc:
        raise SettingsError(f"invalid configuration: {_describe_source_error(exc, 'MGX_LLM_')}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
