"""The objects the app builds at start-up are frozen out of the garbage collector while it serves,
so full collections under load scan only request-time objects (see bench/api_latency.py)."""

from __future__ import annotations

import gc
from pathlib import Path

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.databases import sqlite_copy


async def test_startup_objects_are_frozen_while_serving_and_released_at_shutdown(
    sqlite_template: Path, tmp_path: Path
) -> None:
    app = create_app(make_settings(sqlite_copy(sqlite_template, tmp_path)))

    async with app.router.lifespan_context(app):
        frozen_while_serving = gc.get_freeze_count()

    assert frozen_while_serving > 10_000  # the app, its routes, schemas and the imported libraries
    assert gc.get_freeze_count() == 0
