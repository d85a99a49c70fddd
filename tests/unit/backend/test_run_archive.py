"""The run archive's entry names: nothing unpacks outside the run's folder."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import UTC, datetime

import pytest

from backend.db.models import Artifact
from backend.services.run_archive import safe_entry_name, zip_artifacts


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "a/../../b.py", "a//b.py", "", "./x.py", "..\\win.py"])
def test_names_that_would_leave_the_folder_are_refused(name: str) -> None:
    assert safe_entry_name(name) is None


def test_zip_slip_names_are_left_out_of_the_archive() -> None:
    run_id = uuid.uuid4()
    made = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)  # zip times have 2 s steps
    artifacts = [
        Artifact(run_id=run_id, name=name, media_type="text/x-python", content=body, created_at=made)
        for name, body in [("pkg/mod.py", b"x = 1\n"), ("../escape.py", b"boom"), ("test_mod.py", b"")]
    ]
    archive = zip_artifacts(run_id, 3, artifacts)
    folder = f"mgx-run-3-{str(run_id)[:8]}"
    assert archive.filename == f"{folder}.zip" and archive.entries == 2
    with zipfile.ZipFile(io.BytesIO(archive.content)) as unpacked:
        assert unpacked.namelist() == [f"{folder}/pkg/mod.py", f"{folder}/test_mod.py"]
        assert unpacked.read(f"{folder}/pkg/mod.py") == b"x = 1\n"
        assert unpacked.getinfo(f"{folder}/pkg/mod.py").date_time == (2026, 1, 2, 3, 4, 6)
