"""The line protocol between the service and an out-of-process engine worker (version 1).

Stdlib only: the worker imports this module in its own interpreter (MetaGPT's venv), where
nothing of the service's environment is installed.

Transport: one JSON object per line (UTF-8, no embedded newlines) on the worker's stdin
(service -> worker) and stdout (worker -> service). The worker claims its stdout for the
protocol before it imports anything else and points file descriptor 1 and ``sys.stdout`` at
stderr, so whatever a library prints (MetaGPT prints streamed tokens) never reaches the
protocol stream. The service sends stderr to a file in the run's temporary root; its tail is
the cause reported when a worker dies without saying why.

One worker process serves one engine call (plan, re-plan or execute) of one run and exits; the
run's state between calls lives in the service (the run's checkpoint), never in a worker.

Service -> worker
  {"type": "start", "protocol": 1, "action": "plan" | "replan" | "execute",
   "task": str, "feedback": str | null, "state": {...} | null,
   "llm": {"base_url", "api_key", "model", "role_models": {role: model}, "temperature",
           "max_tokens", "timeout_seconds", "run_label"},
   "limits": {"revision_rounds": int, "tests": int, "require_passing_tests": bool}}
  {"type": "reply", "id": int, ...}        answer to the worker's request ``id``
  {"type": "cancel"}                        stop now (the service kills the worker 1 s later)

Worker -> service
  {"type": "hello", "protocol": 1, "engine": str, "version": str}            first line
  {"type": "event", "event": {...}}        a team event, shaped like ``TeamEvent.to_dict()``:
      run.phase {phase, round}; run.phase_finished {phase, seconds, checkpoint};
      run.plan_ready {plan}; run.log {level, message, role};
      artifact.created {name, media_type, content};
      agent.message {role, action, content, reasoning,
                     llm: {model, prompt_tokens, completion_tokens} | null}
      (one agent.message per model reply: the service counts usage and cost from it)
  {"type": "request", "id": int, "kind": "model_call", "role": str, "action": str}
      asked before every model call; answered {"type": "reply", "id"} while the run's
      budget allows it, otherwise the service stops the worker instead of answering
  {"type": "request", "id": int, "kind": "sandbox", "files": [...], "tests": [...]}
      the generated tests, run in the service's sandbox; answered {"type": "reply", "id",
      "report": {...}} (files and tests are [{"path", "content"}])
  {"type": "done", "state": {...}}         the call finished; ``state`` is the team state
  {"type": "error", "code": str, "message": str, "detail": str}   the call failed
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1
ACTIONS = ("plan", "replan", "execute")
# A line longer than this is a broken worker, not a message (generated files are small).
MAX_LINE_BYTES = 16 * 1024 * 1024


class ProtocolError(Exception):
    """A line that is not a protocol message."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not JSON: {line[:200]!r}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"not a protocol message: {line[:200]!r}")
    return message
