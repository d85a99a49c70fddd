"""Entity tags for optimistic concurrency: ``ETag`` on reads, ``If-Match`` on writes."""

from __future__ import annotations

from backend.errors import PreconditionFailedError


def etag(version: int) -> str:
    return f'"{version}"'


def ensure_if_match(if_match: str | None, version: int) -> None:
    """Raise 412 unless ``If-Match`` is absent, ``*``, or names the current version. A weak tag
    (``W/"1"``) never matches: If-Match uses the strong comparison (RFC 9110, 13.1.1)."""
    if if_match is None:
        return
    candidates = {tag.strip() for tag in if_match.split(",")}
    if "*" in candidates or etag(version) in candidates:
        return
    raise PreconditionFailedError(
        f"If-Match {if_match} does not match the current version {etag(version)}; read it again",
        extra={"current_etag": etag(version)},
    )
