"""The deployment files (Dockerfile, docker-compose.yml, deploy/k8s/) as data for the static tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mgx_agent.llm.config import LLMConfig

from backend.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
K8S_DIR = PROJECT_ROOT / "deploy" / "k8s"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined; ``stage`` counts FROMs from 0."""

    keyword: str
    arguments: str
    stage: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :]
        return json.loads(text)


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, " ".join(arguments.split()), stage))
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """``ENV`` of the final stage (``KEY=value`` pairs, values optionally double-quoted)."""
    env: dict[str, str] = {}
    for instruction in final_stage(instructions):
        if instruction.keyword == "ENV":
            for pair in _split_env_pairs(instruction.arguments):
                key, _, value = pair.partition("=")
                env[key] = value.strip('"')
    return env


def _split_env_pairs(arguments: str) -> list[str]:
    pairs: list[str] = []
    current = ""
    quoted = False
    for char in arguments:
        if char == '"':
            quoted = not quoted
        if char == " " and not quoted:
            if current:
                pairs.append(current)
            current = ""
            continue
        current += char
    if current:
        pairs.append(current)
    return pairs


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def k8s_resources() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s by ``Kind/name`` (the Kustomization excluded)."""
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml_documents(path):
            if document["kind"] != "Kustomization":
                resources[f"{document['kind']}/{document['metadata']['name']}"] = document
    return resources


def known_env_names() -> set[str]:
    """Variables the service reads: ``Settings`` fields and the ``MGX_LLM_*`` provider settings."""
    settings = {name.upper() for name in Settings.model_fields}
    llm_prefix = LLMConfig.model_config.get("env_prefix", "MGX_LLM_")
    return settings | {f"{llm_prefix}{name}".upper() for name in LLMConfig.model_fields}


def runner_grace_default() -> float:
    return float(Settings.model_fields["runner_shutdown_grace_seconds"].default)
