"""Separating a reasoning model's thinking from its answer.

DeepSeek-R1, Qwen3 and QwQ served without a reasoning parser put their thinking in the
content, as a leading ``<think>...</think>`` block (some templates open the block in the
prompt, so the reply starts with the thinking and only the closing tag appears). Other
providers send it in a ``reasoning_content`` or ``reasoning`` field. Either way the team
parses only the answer; the thinking is kept apart, for the run's log, and never enters the
next prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEADING_BLOCK = re.compile(
    r"\A\s*<(?P<tag>think|thinking|reasoning)>(?P<body>.*?)</(?P=tag)>", re.DOTALL | re.IGNORECASE
)
_LEADING_UNCLOSED = re.compile(
    r"\A\s*<(?:think|thinking|reasoning)>(?P<body>.*)\Z", re.DOTALL | re.IGNORECASE
)
_OPENING = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_ORPHAN_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE)  # an opening or closing fence line


@dataclass(frozen=True)
class SplitReply:
    answer: str  # empty when the reply opened a reasoning block and never closed it
    reasoning: str


def split_reasoning(content: str) -> SplitReply:
    """The answer and the reasoning of one reply's content.

    Only reasoning at the start of the reply is taken out: a ``<think>`` inside a code block
    (say, in a parser for such tags) is part of the answer.
    """
    reasoning: list[str] = []
    rest = content
    orphan = _ORPHAN_CLOSE.search(rest)
    # The opening tag was part of the prompt template: all before the first closing tag is
    # thinking (drafts of code included), unless the tag sits inside a code block.
    if (
        orphan is not None
        and _OPENING.search(rest, 0, orphan.start()) is None
        and len(_FENCE.findall(rest, 0, orphan.start())) % 2 == 0
    ):
        reasoning.append(rest[: orphan.start()].strip())
        rest = rest[orphan.end() :]
    while True:
        block = _LEADING_BLOCK.match(rest)
        if block is None:
            break
        reasoning.append(block.group("body").strip())
        rest = rest[block.end() :]
    unclosed = _LEADING_UNCLOSED.match(rest)
    if unclosed is not None:
        reasoning.append(unclosed.group("body").strip())
        return SplitReply("", _join(reasoning))
    return SplitReply(rest.lstrip("\r\n").rstrip() if reasoning else rest, _join(reasoning))


def _join(parts: list[str]) -> str:
    return "\n\n".join(part for part in parts if part)

