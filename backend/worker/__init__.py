"""The worker role: a process that executes runs and serves no API.

``python -m backend.worker`` reads the same settings as the API and starts the same run
machinery (database, Redis, event publisher, sandbox, runner) through the API's own lifespan,
so a run executes identically in either role. Over HTTP it answers only its probes and metrics
(``/health/live``, ``/health/ready``, ``/health/status``, ``/metrics``) on ``API_HOST:API_PORT``;
SIGTERM drains it exactly as it drains an API process (stop claiming, let in-flight phases
finish within ``RUNNER_SHUTDOWN_GRACE_SECONDS``, hand the rest back to the queue).

Scaling out: API replicas with ``RUNNER_WORKERS=0`` take requests and queue runs; any number of
workers claim them from the shared PostgreSQL database (the claim skips rows another worker
holds). Events reach API subscribers through Redis, or the database poll without it.
"""
