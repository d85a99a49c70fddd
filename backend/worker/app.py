"""The worker's ASGI app: the API's lifespan (so the run machinery is started and drained the
same way) behind the probe and metrics routes only."""

from __future__ import annotations

from fastapi import FastAPI

from backend import __version__
from backend.app.auth import install_authentication
from backend.app.main import add_routes, lifespan
from backend.app.problems import install_problem_handlers
from backend.config import Settings, get_settings, load_llm_config
from backend.routers import health
from backend.routers import metrics as metrics_routes
from backend.worker.settings import check_worker_settings
from mgx_agent.llm import LLMConfig


def create_worker_app(settings: Settings | None = None, llm_config: LLMConfig | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_worker_settings(settings)
    app = FastAPI(
        title="MGX Agent worker",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.llm_config = llm_config or load_llm_config()
    install_problem_handlers(app)
    add_routes(app, health.router, metrics_routes.router)
    # /metrics asks for a key when API_KEYS is set, as on the API; the probes never do.
    install_authentication(app, settings)
    return app
