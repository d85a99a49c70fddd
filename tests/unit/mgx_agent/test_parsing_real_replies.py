"""What the parsers accept from real models (CRLF, captions, example blocks, bare first-line
names) and how exactly they say what they refuse."""

from __future__ import annotations

import pytest

from mgx_agent.llm import OpenAICompatibleClient
from mgx_agent.parsing import (
    OutputFormatError,
    parse_code_files,
    parse_complexity,
    parse_plan,
    parse_review,
    parse_source_files,
)
from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.model_replies import CLAUDE_CAPTIONED_CODE, FIZZBUZZ_CODE, GPT4O_CRLF_CODE, TASK
from tests.unit.mgx_agent.team_support import make_team


def test_crlf_reply_with_several_blocks_parses_with_lf_content() -> None:
    files = parse_code_files(GPT4O_CRLF_CODE)
    # The bash example has no file name and sits next to a named block: it is ignored.
    assert [(f.path, f.content) for f in files] == [("fizzbuzz.py", FIZZBUZZ_CODE)]


def test_crlf_plan_review_and_complexity_parse() -> None:
    plan = (
        '```json\r\n{"summary": "s", "complexity": "XS", "steps": [{"title": "t", '
        '"assignee": "alex"}], "acceptance_criteria": ["a"]}\r\n```\r\n'
    )
    assert parse_plan(plan).complexity == "XS"
    assert parse_complexity("COMPLEXITY: S\r\nOne function.\r\n") == "S"
    review = parse_review("VERDICT: CHANGES_REQUIRED\r\nFIX: tests\r\n- Fix the zero case\r\n")
    assert (review.changes_in, review.notes) == ("tests", ("Fix the zero case",))


def test_caption_and_bare_first_line_name_their_files() -> None:
    files = parse_code_files(CLAUDE_CAPTIONED_CODE)
    assert [f.path for f in files] == ["fizzbuzz.py", "printing.py"]
    assert files[1].content.startswith("from fizzbuzz import fizzbuzz")


@pytest.mark.parametrize(
    "reply",
    [
        "Filename: app.py\n```python\nX = 1\n```",
        "`app.py`:\n```python\nX = 1\n```",
        "1. `app.py`\n```python\nX = 1\n```",
        "```python app.py\nX = 1\n```",
        "```python\n# app.py\nX = 1\n```",
    ],
)
def test_common_file_name_captions(reply: str) -> None:
    assert [(f.path, f.content) for f in parse_source_files(reply)] == [("app.py", "X = 1\n")]


def test_unnamed_blocks_alone_are_refused_with_what_to_do() -> None:
    reply = "```python\nX = 1\n```\n```bash\npython app.py\n```"
    with pytest.raises(OutputFormatError, match=r"none of the 2 code blocks has a file path.*# file:"):
        parse_source_files(reply)


def test_target_line_is_not_taken_from_an_ordinary_note() -> None:
    review = parse_review("VERDICT: CHANGES_REQUIRED\n- Fix: code crashes on empty input")
    assert (review.changes_in, review.notes) == ("code", ("Fix: code crashes on empty input",))
    with pytest.raises(OutputFormatError, match="several targets"):
        parse_review("VERDICT: CHANGES_REQUIRED\nFIX: code\nFIX: tests\n- x")


async def test_crlf_and_captioned_replies_need_no_re_ask_in_a_team_run(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(GPT4O_CRLF_CODE, role="alex", action="WriteCode")
    team = make_team(client)
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "approved"
    assert len(fake_llm.requests_for(action="WriteCode")) == 1
    assert "\r" not in result.files[0].content
