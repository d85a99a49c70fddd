"""Which file names the team may write, so generated files cannot steer the test runner.

The code and tests come from a model and are untrusted. A code file named ``conftest.py`` would
be loaded by pytest as a plugin (and could forge the result), ``sitecustomize.py`` or a ``.pth``
file runs at interpreter start, a ``pytest.ini`` or ``pyproject.toml`` changes how tests are
collected, and a file named like one of the service's own artifacts (``plan.json``) would replace
it. The parser refuses such names (the model is re-asked with the reason) and the sandbox refuses
them again on its own, so neither relies on the other.
"""

from __future__ import annotations

# Artifacts the team and the service write themselves; generated files may not take these names.
RESERVED_ARTIFACT_NAMES = frozenset(
    {"plan.json", "review.md", "sandbox-report.json", "result.json", "transcript.txt"}
)

# Files that the interpreter, pytest or packaging tools read as configuration or plugins.
_RUNNER_CONTROL_NAMES = frozenset(
    {
        "conftest.py",
        "sitecustomize.py",
        "usercustomize.py",
        "pytest.ini",
        ".pytest.ini",
        "pyproject.toml",
        "setup.cfg",
        "tox.ini",
        "setup.py",
        "noxfile.py",
        "__main__.py",
    }
)


# Top-level modules the test runner itself imports: a generated module of the same name would
# shadow pytest inside the sandbox (and break or steer the run).
_RUNNER_MODULES = frozenset({"pytest", "_pytest", "pluggy", "iniconfig", "py", "packaging"})


def _base_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def problem_with_code_file_name(path: str) -> str | None:
    """Why Alex may not write ``path`` (a sanitised relative path), or None when it is fine."""
    if path in RESERVED_ARTIFACT_NAMES:
        return f"code file {path!r} has the name of an artifact the service writes itself"
    name = _base_name(path).lower()
    if name in _RUNNER_CONTROL_NAMES:
        return (
            f"code file {path!r} is not allowed: {name} configures the interpreter or the test "
            "runner; put the code in an ordinary module"
        )
    top = path.split("/", 1)[0].lower().removesuffix(".py")
    if top in _RUNNER_MODULES:
        return f"code file {path!r} is not allowed: it would shadow the test runner's {top!r}"
    if name.endswith(".pth"):
        return f"code file {path!r} is not allowed: .pth files run code at interpreter start"
    if name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")):
        return f"code file {path!r} is named like a test; the tests are written separately"
    return None


def problem_with_test_file_name(path: str) -> str | None:
    """Why Bob may not write ``path``, or None: tests are ``test_*.py`` or ``conftest.py``."""
    if path in RESERVED_ARTIFACT_NAMES:
        return f"test file {path!r} has the name of an artifact the service writes itself"
    name = _base_name(path)
    if name == "conftest.py" or (name.startswith("test_") and name.endswith(".py")):
        return None
    return f"test file {path!r} must be named test_<something>.py (or conftest.py for fixtures)"
