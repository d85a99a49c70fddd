# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /build
COPY requirements.txt .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

FROM python:3.11-slim
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000
RUN useradd --create-home --uid 10001 mgx
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=mgx:mgx backend ./backend
COPY --chown=mgx:mgx mgx_agent ./mgx_agent
COPY --chown=mgx:mgx alembic ./alembic
COPY --chown=mgx:mgx alembic.ini ./
USER mgx
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"]
CMD ["sh", "-c", "alembic upgrade head && exec python -m backend.app.main"]
