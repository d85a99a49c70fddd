#!/usr/bin/env bash
# The quick start on a fresh virtual environment with the runtime requirements only (no dev
# tools): the service starts on its embedded defaults, and a demo run of a task completes with
# its generated tests really executed and passing in the sandbox. CI runs this before the suite,
# because the dev requirements would hide a runtime dependency that is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
port=$("$work/venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
SQLITE_PATH="$work/mgx.db" API_PORT=$port "$work/venv/bin/python" -m backend.app.main >"$work/server.log" 2>&1 &
server=$!
"$work/venv/bin/python" - "$port" <<'PY' || { cat "$work/server.log"; exit 1; }
import json, sys, time, urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}"

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")

deadline = time.monotonic() + 120
while True:
    try:
        call("GET", "/health/ready")
        break
    except OSError:
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.2)
task = call("POST", "/tasks/", {"title": "ISO-8601 durations", "description": "write a function that parses ISO-8601 durations", "config": {"auto_approve_plan": True}})
run = call("POST", "/runs/", {"task_id": task["id"]})
while run["status"] not in ("completed", "failed", "cancelled", "rejected", "expired"):
    assert time.monotonic() < deadline + 120, f"run stayed {run['status']}"
    time.sleep(0.3)
    run = call("GET", f"/runs/{run['id']}")
report = call("GET", f"/runs/{run['id']}/artifacts/sandbox-report.json")
print(f"quick start: run {run['status']}; sandbox {report['status']} ({report['passed']} passed, isolation {report['isolation']})")
assert run["status"] == "completed", run.get("error")
assert report["status"] == "passed" and report["passed"] > 0 and report["isolation"] == "bubblewrap", report
PY
