"""The application factory, its lifespan, and the ``python -m backend.app.main`` entry point."""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.middleware.cors import CORSMiddleware
from mgx_agent.llm import LLMConfig
from mgx_agent.sandbox import describe_sandbox_line

from backend import __version__
from backend.app.auth import announce_access, install_authentication
from backend.app.admission import install_admission
from backend.app.docs import install_offline_docs
from backend.app.hardening import make_process_undumpable
from backend.app.limits import install_limits
from backend.app.problems import install_problem_handlers
from backend.app.response_headers import RATE_LIMIT_HEADERS
from backend.app import startup
from backend.app.openapi_examples import add_request_examples
from backend.app.shutdown import GracefulShutdown
from backend.config import Settings, SettingsError, get_settings, load_llm_config
from backend.console import CONSOLE_URL, install_console
from backend.db.engine import (
    Database,
    create_engine,
    create_probe_engine,
    create_runner_engine,
    create_session_factory,
)
from backend.db.migrations import upgrade_to_head
from backend.db.types import utcnow
from backend.observability import metrics
from backend.observability.database import count_database_work
from backend.observability.http import install_request_observability
from backend.observability.logs import configure_logging, uvicorn_log_config
from backend.observability.run_log import RunTransitionLog
from backend.protocols import install_protocols
from backend.routers import events, health, identity, runs, tasks
from backend.routers import metrics as metrics_routes
from backend.schemas.health import ServiceInfoRead
from backend.schemas.problem import Problem
from backend.services.background import BackgroundTaskRunner, RunnerConfig
from backend.services.events import EventBroadcaster
from backend.services.health import database_problem
from backend.services.run_execution import RunExecutor
from backend.services.run_metrics import RunMetricsRecorder
from backend.services.run_signals import RunSignals
from backend.services.team_provider import MGXTeamProvider

logger = logging.getLogger("backend")

DESCRIPTION = (
    "Runs an MGX-style multi-agent software team (Mike plans, Alex codes, Bob tests, Charlie reviews) "
    "as durable background jobs. Errors are `application/problem+json` (RFC 9457)."
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level, settings.log_format)
    logger.info(
        "starting: database %s; LLM %s; sandbox %s; auth %s",
        startup.describe_database(settings.sqlalchemy_url),
        startup.describe_llm(app.state.llm_config),
        startup.sandbox_backend(settings),
        startup.describe_auth(app.state.key_ring),
    )
    if (hint := startup.working_directory_hint(settings)) is not None:
        logger.warning(hint)
    metrics.forget_dead_workers()
    engine = create_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        echo=settings.debug,
    )
    count_database_work(engine)
    probe_engine = create_probe_engine(settings.sqlalchemy_url)
    runner_engine = create_runner_engine(settings.sqlalchemy_url)
    count_database_work(runner_engine)
    redis = None
    try:
        if settings.db_auto_migrate:
            await upgrade_to_head(engine)
        if settings.redis_url is not None:
            import redis.asyncio as redis_asyncio

            redis = redis_asyncio.Redis.from_url(
                settings.redis_url.get_secret_value(), socket_timeout=2, socket_connect_timeout=2
            )
        session_factory = create_session_factory(engine)
        provider = MGXTeamProvider(settings, app.state.llm_config)
        make_process_undumpable()
        sandbox = await provider.check_sandbox()
        provider.start_engine_probe()
        sandbox_safe = sandbox["backend"] == "bubblewrap" and sandbox.get("test_runner")
        logger.log(logging.INFO if sandbox_safe else logging.WARNING, describe_sandbox_line(sandbox))
        signals = RunSignals()
        events = EventBroadcaster(
            session_factory,
            redis=redis,
            poll_seconds=settings.events_poll_seconds,
            queue_size=settings.events_subscriber_queue,
            stream_deltas=settings.mgx_stream_deltas,
        )
        executor = RunExecutor(
            session_factory, provider, approval_ttl_seconds=settings.mgx_approval_ttl_seconds, events=events
        )
        runner_sessions = create_session_factory(runner_engine)
        events.serve(runner_sessions)
        runner = BackgroundTaskRunner(
            runner_sessions, executor, signals, runner_config(settings), database_watch=app.state.database_watch
        )
        app.state.engine = engine
        app.state.probe_engine = probe_engine
        app.state.session_factory = session_factory
        app.state.database = Database(engine, session_factory)
        app.state.redis = redis
        app.state.team_provider = provider
        app.state.run_signals = signals
        app.state.events = events
        app.state.run_metrics = RunMetricsRecorder(session_factory)
        events.observe_commits(app.state.run_metrics.observe)
        events.observe_commits(RunTransitionLog().observe)
        app.state.runner = runner
        app.state.shutdown = GracefulShutdown(runner)
        app.state.started_at = utcnow()
        app.state.started_monotonic = time.monotonic()
        await signals.listen(settings.sqlalchemy_url)
        await events.start()
        await runner.start()
        app.state.shutdown.install_signal_handlers()
        announce_access(app)
        if (problem := await database_problem(probe_engine)) is not None:
            logger.error("database not usable: %s; API calls answer 503 until it is fixed", problem)
        logger.info(
            "started: database %s, cache %s, %d runner worker(s)",
            "migrated" if settings.db_auto_migrate else "migrations not applied automatically",
            settings.mgx_cache_backend if settings.mgx_enable_caching else "off",
            settings.runner_workers,
        )
        # What start-up built lives as long as the process: freezing it keeps full collections
        # from rescanning it (with it, each took ~80 ms and set the p99 latency under load).
        gc.freeze()
        yield
    finally:
        runner = getattr(app.state, "runner", None)
        if runner is not None:
            app.state.shutdown.restore_signal_handlers()
            await app.state.shutdown.drain()  # stops the runner (at once if a signal already drained)
            await app.state.events.close()
            await app.state.run_metrics.close()
            await app.state.run_signals.close()
            await app.state.team_provider.aclose()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
        await runner_engine.dispose()
        await probe_engine.dispose()
        metrics.forget_this_worker()
        gc.unfreeze()  # a process that runs the app again (the tests) can collect this one
        logger.info("stopped")


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        workers=settings.runner_workers,
        lease_seconds=settings.runner_lease_seconds,
        heartbeat_seconds=settings.runner_heartbeat_seconds,
        poll_seconds=settings.runner_poll_seconds,
        max_attempts=settings.runner_max_attempts,
        shutdown_grace_seconds=settings.runner_shutdown_grace_seconds,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
    )


def create_app(settings: Settings | None = None, llm_config: LLMConfig | None = None) -> FastAPI:
    settings = settings or get_settings()
    llm_config = llm_config or load_llm_config()
    app = FastAPI(
        title="MGX Agent API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        debug=False,
        docs_url=None,  # served from local assets by install_offline_docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.llm_config = llm_config
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[
            "ETag", "Location", "Idempotent-Replayed", "Retry-After", "X-Request-ID", *RATE_LIMIT_HEADERS,
            "Mcp-Session-Id",  # a browser MCP client on a handshake-era session must read it
        ],
    )
    install_limits(app, settings)
    install_admission(app)
    install_problem_handlers(app)

    @app.get("/", response_model=ServiceInfoRead, tags=["service"], summary="Service information")
    async def service_info() -> ServiceInfoRead:
        return ServiceInfoRead(
            name="MGX Agent API",
            version=__version__,
            description=DESCRIPTION,
            docs="/docs",
            redoc="/redoc",
            openapi="/openapi.json",
            health="/health/",
            console=f"{CONSOLE_URL}/",
        )

    # Routes are matched in order: the API's own first, then the probes, metrics and the docs.
    add_routes(
        app, tasks.router, runs.router, events.router, events.ws_router, identity.router, health.router,
        metrics_routes.router,
    )
    install_protocols(app, settings)
    install_offline_docs(app)
    install_console(app)
    _register_problem_schema(app)
    install_authentication(app, settings)
    install_request_observability(app)
    return app


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Register the routers' routes on the app itself, as ``include_router`` did before FastAPI
    0.137. Since then it keeps each included router as a node that every request walks (twice:
    to find it, then inside it), which cost more than a simple read's SQL. These routers set
    everything on themselves (prefix, tags, dependencies are part of each route), so nothing is
    lost; a router that needs include-time options must go through ``include_router``."""
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute | APIWebSocketRoute):
                raise TypeError(f"{route!r}: only plain path operations can be added this way")
        app.router.routes.extend(router.routes)


def _register_problem_schema(app: FastAPI) -> None:
    """Make ``Problem`` a named component even when only referenced from ``error_responses``."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
            for name, definition in components["Problem"].pop("$defs", {}).items():
                components.setdefault(name, definition)
            add_request_examples(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _app_or_exit() -> FastAPI:
    try:
        return create_app()
    except SettingsError as exc:
        print(f"mgx-agent-api: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app = _app_or_exit()


def forwarded_header_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For/-Proto: believed only from FORWARDED_ALLOW_IPS
    (uvicorn by itself trusts loopback, so a client behind a local proxy could pick its address)."""
    return {
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
    }


# How long uvicorn's supervisor waits for a worker to answer its health check before it kills it.
# A worker answers once multiprocessing has run this module again in it (spawn re-runs
# __main__): the whole service's imports, 1.5 s on an idle host, more than uvicorn's default 5 s
# on a loaded one, where the default killed workers mid-start and started others the same way.
WORKER_START_SECONDS = 30


def main() -> None:
    import uvicorn

    settings = get_settings()
    workers = None if settings.api_reload else settings.api_workers
    # Bound before the app starts, so a port in use is said at once, before migrations run.
    try:
        listening = startup.bind_listening_socket(settings.api_host, settings.api_port)
    except SettingsError as exc:
        print(f"mgx-agent-api: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Several workers write their metrics to files that any of them adds up at a scrape.
    metrics_dir = metrics.prepare_multiprocess_dir() if (workers or 1) > 1 else None
    try:
        uvicorn.run(
            "backend.app.main:app",
            host=settings.api_host,
            port=settings.api_port,
            fd=listening.fileno(),
            reload=settings.api_reload,
            workers=workers,
            log_level=settings.log_level.lower(),
            log_config=uvicorn_log_config(settings.log_level, settings.log_format),
            access_log=False,  # one access line per request comes from backend.observability.http
            timeout_worker_healthcheck=WORKER_START_SECONDS,
            **forwarded_header_options(settings),
        )
    finally:
        listening.close()
        metrics.remove_multiprocess_dir(metrics_dir)


if __name__ == "__main__":
    main()
