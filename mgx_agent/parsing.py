"""Strict parsers for what the roles write, and the value types they produce.

Every parser either returns a well-formed value or raises ``OutputFormatError`` with a sentence
that tells the model exactly what was wrong; the actions turn that sentence into one corrective
re-ask. Nothing here substitutes a default for output that is missing.

The prompts ask for one strict format; the parsers accept the common ways real models deviate
from it (CRLF line endings, a path as a heading, a caption or a bare first-line comment,
examples in unnamed blocks next to the named files) as long as what is meant is unambiguous.
Reasoning (``<think>`` blocks) is taken out before a reply gets here (``llm/reasoning.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mgx_agent.file_names import problem_with_code_file_name, problem_with_test_file_name

COMPLEXITIES = ("XS", "S", "M", "L", "XL")
ASSIGNEES = ("alex", "bob", "charlie")
APPROVED = "APPROVED"
CHANGES_REQUIRED = "CHANGES_REQUIRED"

MAX_PATH_LENGTH = 120
MAX_FILES = 20
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class OutputFormatError(ValueError):
    """A model reply did not follow the format its action asked for."""


def normalise_line_endings(text: str) -> str:
    """LF line endings and no byte-order mark: CRLF replies parse like any other."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# Plan


class PlanStep(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    title: str = Field(min_length=1)
    assignee: Literal["alex", "bob", "charlie"]
    detail: str = ""

    @field_validator("assignee", mode="before")
    @classmethod
    def _lowercase_assignee(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class Plan(BaseModel):
    """Mike's plan, as approved by a human and followed by the team."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    summary: str = Field(min_length=1)
    complexity: Literal["XS", "S", "M", "L", "XL"]
    steps: list[PlanStep] = Field(min_length=1)
    acceptance_criteria: list[str] = Field(min_length=1)

    @field_validator("complexity", mode="before")
    @classmethod
    def _uppercase_complexity(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    def to_markdown(self) -> str:
        lines = [f"Summary: {self.summary}", f"Complexity: {self.complexity}", "Steps:"]
        lines += [
            f"  {n}. [{step.assignee}] {step.title}" + (f" - {step.detail}" if step.detail else "")
            for n, step in enumerate(self.steps, start=1)
        ]
        lines.append("Acceptance criteria:")
        lines += [f"  - {criterion}" for criterion in self.acceptance_criteria]
        return "\n".join(lines)


def _json_object_candidates(text: str) -> list[str]:
    fenced = re.findall(r"```(?:json)?[^\n]*\n(.*?)```", text, flags=re.DOTALL | re.IGNORECASE)
    candidates = [block for block in fenced if block.strip().startswith("{")]
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    return candidates


def parse_plan(text: str) -> Plan:
    """Parse a plan from a JSON object (bare or in a ```json block)."""
    text = normalise_line_endings(text)
    decoder = json.JSONDecoder()
    data: Any = None
    json_error = ""
    for candidate in _json_object_candidates(text):
        try:
            data, _ = decoder.raw_decode(candidate.strip())
            break
        except json.JSONDecodeError as exc:
            json_error = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        except RecursionError:
            json_error = "it is nested deeper than a plan can be"
    if data is None:
        if json_error:
            raise OutputFormatError(f"the plan is not valid JSON ({json_error})")
        raise OutputFormatError("the reply contains no JSON object with the plan")
    if not isinstance(data, dict):
        raise OutputFormatError("the plan must be a JSON object")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'plan'}: {error['msg']}"
            for error in exc.errors()
        )
        raise OutputFormatError(f"the plan JSON does not match the schema ({problems})") from None


# Complexity

_COMPLEXITY_LINE = re.compile(
    r"^[\s>*#_-]*complexity[\s*_]*[:=][\s*_`]*(XS|XL|S|M|L)\b", re.IGNORECASE | re.MULTILINE
)


def parse_complexity(text: str) -> str:
    """Find the ``COMPLEXITY: <XS|S|M|L|XL>`` line."""
    text = normalise_line_endings(text)
    found = {match.group(1).upper() for match in _COMPLEXITY_LINE.finditer(text)}
    if not found:
        raise OutputFormatError("the reply has no line 'COMPLEXITY: <XS|S|M|L|XL>'")
    if len(found) > 1:
        raise OutputFormatError(
            f"the reply gives several complexities ({', '.join(sorted(found))}); give exactly one"
        )
    return found.pop()


# Code files


@dataclass(frozen=True)
class SourceFile:
    path: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def sanitize_path(raw: str) -> str:
    """Turn a model-provided path into a safe relative POSIX path, or refuse it.

    Absolute paths are made relative (the sandbox root stands in for "/"); ``..`` segments and
    unusual characters are refused rather than rewritten, since guessing would hide the problem.
    """
    path = raw.strip().strip("`'\"").replace("\\", "/")
    path = re.sub(r"^[A-Za-z]:/", "", path)
    segments = [segment for segment in path.split("/") if segment not in ("", ".")]
    if not segments:
        raise OutputFormatError(f"file path {raw!r} is empty")
    if ".." in segments:
        raise OutputFormatError(f"file path {raw!r} must not contain '..'")
    for segment in segments:
        if not _PATH_SEGMENT.match(segment):
            raise OutputFormatError(
                f"file path {raw!r} has an unsupported segment {segment!r} "
                "(use letters, digits, '_', '-', '.')"
            )
    clean = "/".join(segments)
    if len(clean) > MAX_PATH_LENGTH:
        raise OutputFormatError(f"file path {raw!r} is longer than {MAX_PATH_LENGTH} characters")
    return clean


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$", re.MULTILINE)
_PATH_TOKEN = r"[\w./\\-]+\.[A-Za-z0-9]+"
_INFO_PATH = re.compile(
    r"(?:title|file|filename|path)\s*=\s*[\"']?(?P<path>[^\s\"']+)|^[\w+-]*:(?P<colon>\S+)"
    rf"|^(?:[\w+-]+\s+)?(?P<bare>{_PATH_TOKEN})$",
    re.IGNORECASE,
)
# '# file: app.py', and a bare '# app.py' (a comment holding nothing but a file name).
_FIRST_LINE_PATH = re.compile(
    rf"^\s*(?:#|//|--)\s*(?:(?:file|filename|path)\s*:\s*(?P<path>\S+)|(?P<bare>{_PATH_TOKEN}))\s*$",
    re.IGNORECASE,
)
# A line above the block that holds only its path: '### app.py', '**`app.py`**', 'app.py:',
# 'Filename: app.py', '**File:** `app.py`', '1. `app.py`'.
_HEADING_PATH = re.compile(
    r"^[\s#>*_`-]*(?:\d+[.)][\s*_`]*)?(?:(?:file(?:name)?|path)[\s*_`]*:[\s*_`]*)?"
    rf"(?P<path>{_PATH_TOKEN})[\s*_`:]*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Block:
    info: str
    body: str
    preceding_line: str


def _fenced_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    position = 0
    while True:
        opening = _FENCE.search(text, position)
        if opening is None:
            return blocks
        fence = opening.group("fence")
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = closing.search(text, opening.end())
        if end is None:
            raise OutputFormatError("a fenced code block is not closed with ```")
        before = text[: opening.start()].rstrip("\n").rsplit("\n", 1)[-1]
        body = text[opening.end() + 1 : end.start()]
        blocks.append(_Block(opening.group("info").strip(), body, before))
        position = end.end()


def _block_path(block: _Block) -> tuple[str | None, str]:
    """Return (path, body) with a first-line path comment removed from the body."""
    info_match = _INFO_PATH.search(block.info)
    if info_match:
        path = info_match.group("path") or info_match.group("colon") or info_match.group("bare")
        return path, block.body
    first, _, rest = block.body.partition("\n")
    first_match = _FIRST_LINE_PATH.match(first)
    if first_match:
        return first_match.group("path") or first_match.group("bare"), rest
    heading_match = _HEADING_PATH.match(block.preceding_line)
    if heading_match:
        return heading_match.group("path"), block.body
    return None, block.body


def parse_source_files(text: str, *, what: str = "code") -> list[SourceFile]:
    """Extract named files from fenced blocks.

    A block's path comes from its info string (```python title=app.py, ```python:app.py or
    ```python app.py), a first line ``# file: app.py`` (or just ``# app.py``), or a heading or
    caption line right above it (``### app.py``, ``Filename: app.py``). Blocks without a path
    (an example, a shell command) are ignored when at least one block names its file.
    """
    blocks = _fenced_blocks(normalise_line_endings(text))
    if not blocks:
        raise OutputFormatError(f"the reply contains no fenced code block with the {what}")
    named = [(number, *_block_path(block)) for number, block in enumerate(blocks, start=1)]
    if all(raw_path is None for _, raw_path, _ in named):
        which = "the code block has no" if len(blocks) == 1 else f"none of the {len(blocks)} code blocks has a"
        raise OutputFormatError(f"{which} file path; start each block with a line '# file: <path>'")
    files: dict[str, str] = {}
    for _number, raw_path, body in named:
        if raw_path is None:
            continue
        path = sanitize_path(raw_path)
        if path in files:
            raise OutputFormatError(f"file {path!r} appears in more than one code block")
        if not body.strip():
            raise OutputFormatError(f"code block for {path!r} is empty")
        files[path] = body if body.endswith("\n") else body + "\n"
    if len(files) > MAX_FILES:
        raise OutputFormatError(f"the reply has {len(files)} files; at most {MAX_FILES} allowed")
    return [SourceFile(path, content) for path, content in files.items()]


def parse_code_files(text: str) -> list[SourceFile]:
    files = parse_source_files(text, what="code")
    for source in files:
        if problem := problem_with_code_file_name(source.path):
            raise OutputFormatError(problem)
    return files


def parse_test_files(text: str, code_paths: set[str]) -> list[SourceFile]:
    files = parse_source_files(text, what="tests")
    for source in files:
        if problem := problem_with_test_file_name(source.path):
            raise OutputFormatError(problem)
        if source.path in code_paths:
            raise OutputFormatError(f"test file {source.path!r} would overwrite the code file")
        if source.path.rsplit("/", 1)[-1] == "conftest.py":
            continue
        if not re.search(r"^\s*(?:async\s+)?def test_\w*\(", source.content, re.MULTILINE):
            raise OutputFormatError(f"test file {source.path!r} defines no test_ functions")
    return files


# Review


CHANGE_TARGETS = ("code", "tests", "both")


@dataclass(frozen=True)
class Review:
    verdict: str  # APPROVED | CHANGES_REQUIRED
    notes: tuple[str, ...]
    text: str
    # What must change for CHANGES_REQUIRED: Alex's code, Bob's tests, or both.
    changes_in: str = "code"

    @property
    def approved(self) -> bool:
        return self.verdict == APPROVED

    def to_markdown(self) -> str:
        lines = [f"# Review\n\nVerdict: {self.verdict}\n"]
        if not self.approved:
            lines.append(f"Changes in: {self.changes_in}\n")
        if self.notes:
            lines.append("Notes:\n")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "changes_in": self.changes_in,
            "notes": list(self.notes),
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Review:
        return cls(data["verdict"], tuple(data["notes"]), data["text"], data.get("changes_in", "code"))


_VERDICT_LINE = re.compile(
    r"^[\s>*#_-]*verdict[\s*_]*[:=][\s*_`]*(APPROVED|CHANGES[ _-]REQUIRED)\b",
    re.IGNORECASE | re.MULTILINE,
)
_TARGET_LINE = re.compile(
    r"^[\s>*#_-]*(?:fix|changes?[ _-]in|change|target)[\s*_]*[:=][\s*_`]*(code|tests?|both)[\s*_`.]*$",
    re.IGNORECASE | re.MULTILINE,
)
_NOTE_LINE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?P<note>\S.*)$")


def parse_review(text: str) -> Review:
    """Parse ``VERDICT: APPROVED|CHANGES_REQUIRED``, an optional ``FIX: code|tests|both`` line
    (code when absent) and bullet-point notes."""
    text = normalise_line_endings(text)
    verdicts = {
        re.sub(r"[ -]", "_", match.group(1).upper()) for match in _VERDICT_LINE.finditer(text)
    }
    if not verdicts:
        raise OutputFormatError(
            "the reply has no line 'VERDICT: APPROVED' or 'VERDICT: CHANGES_REQUIRED'"
        )
    if len(verdicts) > 1:
        raise OutputFormatError("the reply gives both verdicts; give exactly one")
    verdict = verdicts.pop()
    targets = {_target(match.group(1)) for match in _TARGET_LINE.finditer(text)}
    if len(targets) > 1:
        raise OutputFormatError(
            f"the reply names several targets ({', '.join(sorted(targets))}); "
            "give one line 'FIX: code', 'FIX: tests' or 'FIX: both'"
        )
    notes = tuple(
        match.group("note").strip()
        for line in text.splitlines()
        if (match := _NOTE_LINE.match(line))
        and not _VERDICT_LINE.match(line)
        and not _TARGET_LINE.match(line)
    )
    if verdict == CHANGES_REQUIRED and not notes:
        raise OutputFormatError(
            "CHANGES_REQUIRED needs at least one concrete note as a '- ' bullet line"
        )
    return Review(verdict, notes, text.strip(), targets.pop() if targets else "code")


def _target(word: str) -> str:
    word = word.lower()
    return "tests" if word.startswith("test") else word
