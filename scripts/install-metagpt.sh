#!/usr/bin/env bash
# Creates MetaGPT's own virtual environment for the `metagpt` engine, outside the service's.
#
#   scripts/install-metagpt.sh <venv-dir>        (default: ~/.cache/mgx-agent/metagpt-venv)
#
# MetaGPT 0.8.2 cannot share the service's environment (it pins openai 1.39, aiohttp 3.8.6,
# pydantic 2.9) and `pip install metagpt==0.8.2` fails on the registry (its pin lancedb==0.4.0
# is not there). So MetaGPT itself is installed without its declared dependencies, then exactly
# the 130 packages a Team run needs (scripts/metagpt/lock.txt; derived from requirements.txt
# under constraints.txt). At the end the worker's own check runs in the new interpreter and the
# line to put in the service's environment is printed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mgx-agent/metagpt-venv}"
python="${MGX_METAGPT_BASE_PYTHON:-python3.11}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "install-metagpt: $python not found (MetaGPT 0.8.2 needs Python 3.9-3.11; set MGX_METAGPT_BASE_PYTHON)" >&2
  exit 1
fi
mkdir -p "$venv"
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$(cd "$venv" && pwd -P)" = "$(cd "$VIRTUAL_ENV" && pwd -P)" ]; then
  echo "install-metagpt: $venv is the active (service) environment; give MetaGPT its own" >&2
  exit 1
fi

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --no-deps "metagpt==0.8.2"
"${pip[@]}" install --no-deps -r "$here/metagpt/lock.txt"
"$venv/bin/python" "$here/../mgx_agent/engines/metagpt_worker.py" --check
echo "MGX_METAGPT_PYTHON=$venv/bin/python"
