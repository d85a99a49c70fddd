"""HTTP access to the service: one ``httpx.Client`` per command, errors as exceptions that say
what the service said, and a run's event stream that survives dropped connections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

DEFAULT_API_URL = "http://127.0.0.1:8000"
TERMINAL_EVENTS = frozenset({"run.completed", "run.failed", "run.cancelled", "run.rejected", "run.expired"})
# How long to wait before reconnecting, unless the stream said otherwise (`retry:`).
RECONNECT_SECONDS = 1.0
# Give up on a stream after this many reconnections in a row that brought nothing new.
MAX_RECONNECTS_WITHOUT_PROGRESS = 30


class ServiceError(Exception):
    """The service answered with an error; ``str()`` is its problem+json title and detail."""

    def __init__(self, status: int, title: str, detail: str | None, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body or {}
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServiceError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "title" in body:
            return cls(response.status_code, str(body["title"]), body.get("detail"), body)
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else None
        return cls(response.status_code, response.reason_phrase or "error", text)


class ServiceUnreachable(Exception):
    """No answer from the service (refused, timed out, cut off)."""


@dataclass(frozen=True)
class RunEvent:
    """One stored run event as the stream delivers it (``seq`` orders them, without gaps)."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: str

    @property
    def terminal(self) -> bool:
        # `run.rejected` also names a rejected plan that is re-planned; only the one that ends
        # the run carries the final status.
        return self.type in TERMINAL_EVENTS and (self.type != "run.rejected" or self.data.get("status") == "rejected")


class ServiceClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"User-Agent": "mgx-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"cannot reach the service at {self.base_url}: {exc or type(exc).__name__}") from None
        if response.is_error:
            raise ServiceError.from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    # Tasks
    def create_task(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.json("POST", "/tasks/", json=body, headers=headers)

    def list_tasks(self, **params: Any) -> dict[str, Any]:
        return self.json("GET", "/tasks/", params=_present(params))

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.json("GET", f"/tasks/{task_id}")

    # Runs
    def start_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", "/runs/", json=body)

    def list_runs(self, **params: Any) -> dict[str, Any]:
        return self.json("GET", "/runs/", params=_present(params))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.json("GET", f"/runs/{run_id}")

    def approve(self, run_id: str, comment: str | None = None) -> dict[str, Any]:
        return self.json("POST", f"/runs/{run_id}/approve", json=_present({"comment": comment}))

    def reject(self, run_id: str, feedback: str | None, replan: bool) -> dict[str, Any]:
        return self.json("POST", f"/runs/{run_id}/reject", json=_present({"feedback": feedback, "replan": replan}))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self.json("POST", f"/runs/{run_id}/cancel")

    def transcript(self, run_id: str) -> str:
        return self.request("GET", f"/runs/{run_id}/logs", headers={"Accept": "text/plain"}).text

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self.json("GET", f"/runs/{run_id}/artifacts")

    def artifact(self, run_id: str, name: str) -> bytes:
        return self.request("GET", f"/runs/{run_id}/artifacts/{name}").content

    def events(
        self, run_id: str, after: int = 0, on_reconnect: Callable[[str, int], None] | None = None
    ) -> Iterator[RunEvent]:
        """The run's stored events after ``after``, live, until its terminal event.

        A dropped connection is resumed with ``Last-Event-ID`` (the last ``seq`` received), so
        nothing is missed, and an event seen already is never yielded twice; ``on_reconnect`` hears
        why and after which ``seq``. Live token previews (``agent.delta``) carry no ``seq`` and are
        left out.
        """
        last_seq = after
        delay = RECONNECT_SECONDS
        attempts_without_progress = 0
        connected = False
        while True:
            before = last_seq
            try:
                with connect_sse(
                    self.http, "GET", f"/runs/{run_id}/events",
                    headers={"Last-Event-ID": str(last_seq)}, timeout=httpx.Timeout(30.0, read=None),
                ) as source:
                    connected = True
                    if source.response.status_code == 204:  # finished, nothing after last_seq
                        return
                    if source.response.is_error:
                        source.response.read()
                        raise ServiceError.from_response(source.response)
                    for message in source.iter_sse():
                        if message.retry is not None:
                            delay = message.retry / 1000
                        if not message.id or not message.data:
                            continue
                        event = _parse_event(message.data)
                        if event is None or event.seq <= last_seq:
                            continue
                        last_seq = event.seq
                        yield event
                        if event.terminal:
                            return
            except (httpx.TransportError, SSEError) as exc:
                reason = str(exc) or type(exc).__name__
                if not connected:  # a wrong address or a stopped service: say so at once
                    raise ServiceUnreachable(f"cannot reach the service at {self.base_url}: {reason}") from None
            else:
                reason = "the stream ended before the run did"
            attempts_without_progress = 0 if last_seq > before else attempts_without_progress + 1
            if attempts_without_progress > MAX_RECONNECTS_WITHOUT_PROGRESS:
                raise ServiceUnreachable(f"lost the event stream of run {run_id}: {reason}")
            if on_reconnect is not None:
                on_reconnect(reason, last_seq)
            time.sleep(delay)


def _parse_event(data: str) -> RunEvent | None:
    try:
        envelope = json.loads(data)
        return RunEvent(int(envelope["seq"]), str(envelope["type"]), envelope.get("data") or {},
                        str(envelope.get("created_at", "")))
    except (ValueError, KeyError, TypeError):
        return None


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
