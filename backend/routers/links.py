"""OpenAPI links between operations: what a response's ids lead to (task -> its runs -> their
artifacts). Clients and schema-driven tools (Swagger UI, schemathesis' stateful phase) follow
them to the next call instead of guessing ids."""

from __future__ import annotations

from typing import Any


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _link(path: str, method: str, description: str, **how: Any) -> dict[str, Any]:
    return {"operationRef": _ref(path, method), "description": description, **how}


TASK_ID = {"task_id": "$response.body#/id"}
RUN_ID = {"run_id": "$response.body#/id"}

# From a task (created, read or updated) to what can be done with it.
TASK_LINKS = {
    "GetTask": _link("/tasks/{task_id}", "get", "Read the task again.", parameters=TASK_ID),
    "UpdateTask": _link("/tasks/{task_id}", "patch", "Change the task.", parameters=TASK_ID),
    "DeleteTask": _link("/tasks/{task_id}", "delete", "Delete the task.", parameters=TASK_ID),
    "StartRun": _link("/runs/", "post", "Start a run of the task.", requestBody={"task_id": "$response.body#/id"}),
    "ListRunsOfTask": _link("/runs/", "get", "The task's runs.", parameters={"query.task_id": "$response.body#/id"}),
}

# From a run to its actions, its task, its artifacts and its log.
RUN_LINKS = {
    "GetRun": _link("/runs/{run_id}", "get", "Read the run again.", parameters=RUN_ID),
    "UpdateRun": _link("/runs/{run_id}", "patch", "Edit the run's label or notes.", parameters=RUN_ID),
    "DeleteRun": _link("/runs/{run_id}", "delete", "Delete the finished run.", parameters=RUN_ID),
    "ApproveRun": _link("/runs/{run_id}/approve", "post", "Approve the run's plan.", parameters=RUN_ID),
    "RejectRun": _link("/runs/{run_id}/reject", "post", "Reject the run's plan.", parameters=RUN_ID),
    "CancelRun": _link("/runs/{run_id}/cancel", "post", "Cancel the run.", parameters=RUN_ID),
    "ListArtifacts": _link("/runs/{run_id}/artifacts", "get", "The run's artifacts.", parameters=RUN_ID),
    "GetRunLogs": _link("/runs/{run_id}/logs", "get", "The run's event log.", parameters=RUN_ID),
    "GetTaskOfRun": _link("/tasks/{task_id}", "get", "The run's task.", parameters={"task_id": "$response.body#/task_id"}),
}

# From a run's artifact list to each artifact's content.
ARTIFACT_LINKS = {
    "GetArtifact": _link(
        "/runs/{run_id}/artifacts/{name}",
        "get",
        "Download the first artifact listed.",
        parameters={"run_id": "$request.path.run_id", "name": "$response.body#/0/name"},
    ),
}


def linked(status: int, description: str, links: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` entry declaring ``links`` on the ``status`` response."""
    return {status: {"description": description, "links": links}}
