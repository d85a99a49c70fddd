"""A run's artifacts as one zip file: what ``GET /runs/{id}/archive`` answers.

Entries sit under one folder named after the run, so unpacking never scatters files into the
current directory. Artifact names were checked when they were produced (``mgx_agent.file_names``);
a name that would still escape that folder (absolute, or with a ``..`` part) is left out rather
than trusted, since the archive is unpacked on someone else's machine.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backend.db.models import Artifact

ARCHIVE_MEDIA_TYPE = "application/zip"


@dataclass(frozen=True)
class RunArchive:
    filename: str
    content: bytes
    entries: int


def archive_folder(run_id: uuid.UUID, number: int) -> str:
    return f"mgx-run-{number}-{str(run_id)[:8]}"


def safe_entry_name(name: str) -> str | None:
    """``name`` as a relative POSIX path inside the archive, or None if it would leave it."""
    parts = name.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") for part in parts):  # "" covers absolute paths and "a//b"
        return None
    return "/".join(parts)


def zip_artifacts(run_id: uuid.UUID, number: int, artifacts: Sequence[Artifact]) -> RunArchive:
    folder = archive_folder(run_id, number)
    buffer = io.BytesIO()
    entries = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for artifact in artifacts:
            name = safe_entry_name(artifact.name)
            if name is None:
                continue
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=_zip_time(artifact.created_at))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, artifact.content)
            entries += 1
    return RunArchive(f"{folder}.zip", buffer.getvalue(), entries)


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    # Zip timestamps cannot go before 1980.
    return max((moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second), (1980, 1, 1, 0, 0, 0))
