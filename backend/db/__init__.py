"""Persistence: engine and sessions, ORM models, migrations and repositories (all SQL lives here)."""
