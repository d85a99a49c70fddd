"""What an A2A user message in an input-required task says about the plan."""

from __future__ import annotations

import uuid

import pytest
from a2a.helpers.proto_helpers import new_data_part, new_text_part
from a2a.types import Message, Role
from a2a.utils.errors import InvalidParamsError

from backend.protocols.a2a.handler import plan_decision
from backend.schemas.runs import RunApprove, RunReject


def message(*parts) -> Message:  # type: ignore[no-untyped-def]
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=list(parts))


@pytest.mark.parametrize("text", ["approve", "Yes", "LGTM.", " ok! ", "go ahead"])
def test_an_approval_word_approves(text: str) -> None:
    assert isinstance(plan_decision(message(new_text_part(text))), RunApprove)


def test_any_other_text_rejects_with_it_as_feedback_and_replans() -> None:
    decision = plan_decision(message(new_text_part("yes, but use a generator")))
    assert decision == RunReject(feedback="yes, but use a generator", replan=True)


def test_a_data_part_decides_for_programs() -> None:
    approve = plan_decision(message(new_data_part({"decision": "approve", "feedback": "ship it"})))
    reject = plan_decision(message(new_data_part({"decision": "reject"})))
    assert approve == RunApprove(comment="ship it")
    assert reject == RunReject(feedback=None, replan=False)  # no feedback: the run ends rejected


def test_a_message_without_text_or_decision_is_refused() -> None:
    with pytest.raises(InvalidParamsError):
        plan_decision(message(new_data_part({"unrelated": True})))
