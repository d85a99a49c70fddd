"""The host side of a test run's files: a private staging directory, and removing it for sure.

The staging directory holds what the sandbox gets read-only: the generated files under
``files/`` and pytest's configuration file, which lives outside the workspace so a generated
``pytest.ini`` or ``pyproject.toml`` cannot change how tests run. Names are checked again here
(the parser checked them too), so the sandbox is safe whoever calls it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from mgx_agent.file_names import problem_with_code_file_name, problem_with_test_file_name
from mgx_agent.parsing import SourceFile

MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024

# Everything pytest is told; nothing in the workspace can add to it.
PYTEST_CONFIG = "[pytest]\naddopts =\npython_files = test_*.py\nconsole_output_style = classic\n"


class SandboxInputError(ValueError):
    """The files handed to the sandbox are not acceptable (name, path or size)."""


def check_files(files: list[SourceFile], tests: list[SourceFile]) -> None:
    total = 0
    for source, problem in [(f, problem_with_code_file_name(f.path)) for f in files] + [
        (t, problem_with_test_file_name(t.path)) for t in tests
    ]:
        if problem:
            raise SandboxInputError(problem)
        if source.path.startswith("/") or ".." in source.path.split("/"):
            raise SandboxInputError(f"refusing a path outside the workspace: {source.path!r}")
        size = len(source.content.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            raise SandboxInputError(f"file {source.path!r} is larger than {MAX_FILE_BYTES} bytes")
        total += size
    if total > MAX_TOTAL_BYTES:
        raise SandboxInputError(f"the files add up to more than {MAX_TOTAL_BYTES} bytes")


def make_staging(files: list[SourceFile], tests: list[SourceFile], owner: int | None) -> Path:
    """Write the files to a new private directory; ``owner`` is the uid that must read it."""
    check_files(files, tests)
    root = Path(tempfile.mkdtemp(prefix="mgx-sandbox-"))
    try:
        inputs = root / "files"
        inputs.mkdir()
        for source in [*files, *tests]:
            target = (inputs / source.path).resolve()
            if not target.is_relative_to(inputs.resolve()):
                raise SandboxInputError(f"refusing to write outside the sandbox: {source.path!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.content, encoding="utf-8")
        (root / "pytest.ini").write_text(PYTEST_CONFIG, encoding="utf-8")
        if owner is not None and owner != os.geteuid():
            for path in [root, *root.rglob("*")]:
                os.chown(path, owner, owner, follow_symlinks=False)
    except BaseException:
        remove_tree(root)
        raise
    return root


def _make_removable(function, path, _exc_info) -> None:  # noqa: ANN001 - shutil's onerror shape
    """Give back the permissions generated code took away (a mode-000 directory), then retry."""
    parent = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.chmod(parent, stat.S_IRWXU)
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
    with contextlib.suppress(FileNotFoundError):
        if function in (os.rmdir, os.unlink, os.remove) or not os.path.isdir(path):
            function(path)
        else:
            shutil.rmtree(path, onerror=_make_removable)


def remove_tree(root: Path) -> bool:
    """Remove ``root`` whatever the code inside did to its permissions; True when it is gone."""
    with contextlib.suppress(FileNotFoundError):
        for directory, subdirectories, _files in os.walk(root):
            for name in subdirectories:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    with contextlib.suppress(OSError):
                        os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(root, onerror=_make_removable)
    return not root.exists()
