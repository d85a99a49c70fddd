"""Service errors as A2A errors, each carrying the problem detail REST would answer as ``data``."""

from __future__ import annotations

from a2a.utils.errors import A2AError, InternalError, InvalidParamsError, TaskNotFoundError, UnsupportedOperationError

from backend.protocols.problems import problem_for


def a2a_error_for(error: Exception, instance: str) -> A2AError:
    problem = problem_for(error, instance)
    status = problem["status"]
    kind: type[A2AError]
    if status == 404:
        kind = TaskNotFoundError
    elif status == 409:
        kind = UnsupportedOperationError
    elif status in (400, 422):
        kind = InvalidParamsError
    else:
        kind = InternalError
    return kind(message=problem["detail"], data=problem)
