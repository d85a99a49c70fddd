"""``GET /metrics``: Prometheus metrics in the text exposition format.

An ordinary route, so the app-wide authentication covers it (Prometheus scrapes with a bearer
token when ``API_KEYS`` is set); the rate limiter leaves it alone.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from backend.observability.metrics import render
from backend.services.run_metrics import read_run_gauges

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    description=(
        "Requests by method, route and status with latencies; runs by status, queue depth and "
        "oldest queued run (database-wide); run and phase durations; LLM calls, tokens and cost "
        "by model and role; cache hits and misses; live event subscribers. With several workers "
        "(`API_WORKERS`), every worker's figures are added up whichever worker answers. The "
        "Prometheus text format, or OpenMetrics when the `Accept` header asks for it."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The metrics, in the Prometheus text format.",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        }
    },
)
async def metrics(request: Request) -> Response:
    state = request.app.state
    await state.run_metrics.flush()
    gauges = await read_run_gauges(state.session_factory)
    body, media_type = render(gauges.families(), request.headers.get("accept"))
    return Response(body, media_type=media_type)
