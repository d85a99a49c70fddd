"""The test launcher that runs inside the sandbox (its source is passed to ``python -I -c``).

It imports nothing from mgx_agent (the package is not visible inside the sandbox): it copies the
read-only input files into the writable workspace, runs pytest in-process with a small plugin
that counts outcomes, and writes one JSON document with the counts and the failing tests' output
to the result channel (the inherited descriptor named in the argument). The host treats that document as untrusted: it is
size-capped, parsed off the event loop and checked field by field.

Argument: one JSON object with ``input``, ``workspace``, ``config`` (pytest's configuration file,
outside the workspace), ``result_fd`` and ``failure_chars``.
"""

import json
import os
import shutil
import sys

class _Outcomes:
    def __init__(self, failure_chars):
        self.counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        self.failures = []
        self.failure_chars = failure_chars

    def _keep(self, report):
        if len(self.failures) < 20:
            text = getattr(report, "longreprtext", "") or ""
            self.failures.append({"test": report.nodeid, "output": text[-self.failure_chars :]})

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            if report.passed:
                self.counts["passed"] += 1
            elif report.failed:
                self.counts["failed"] += 1
                self._keep(report)
            else:
                self.counts["skipped"] += 1
        elif report.failed:
            self.counts["errors"] += 1
            self._keep(report)
        elif report.skipped and report.when == "setup":
            self.counts["skipped"] += 1

    def pytest_collectreport(self, report):
        if report.failed:
            self.counts["errors"] += 1
            self._keep(report)


def main():
    spec = json.loads(sys.argv[1])
    workspace = spec["workspace"]
    # pytest first, so no generated module can stand in for it or for what it imports.
    import pytest

    shutil.copytree(spec["input"], workspace, dirs_exist_ok=True)
    os.chdir(workspace)
    sys.path.insert(0, workspace)

    outcomes = _Outcomes(spec["failure_chars"])
    arguments = [
        "-q",
        "-c", spec["config"],
        "--rootdir", workspace,
        "--confcutdir", workspace,
        "-p", "no:cacheprovider",
        "--tb=short",
        workspace,
    ]  # fmt: skip
    exit_code = int(pytest.main(arguments, plugins=[outcomes]))
    document = {"exit_code": exit_code, **outcomes.counts, "failures": outcomes.failures}
    try:
        with os.fdopen(spec["result_fd"], "w", encoding="utf-8") as channel:
            json.dump(document, channel)
    except OSError:
        pass
    sys.stdout.flush()
    os._exit(exit_code)


main()
