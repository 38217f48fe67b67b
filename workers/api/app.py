"""The API's aiohttp application: routes, middlewares, the OpenAPI document, the wallboard.

The OpenAPI description is a static document kept next to the handlers
(``openapi.yaml``); a test checks that every route here is described there and that
nothing described is missing here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from workers.api.auth import TokenAuth
from workers.api.errors import error_middleware
from workers.api.handlers import ApiContext, Handlers
from workers.api.metrics import ApiMetrics
from workers.api.reports import ReportHandlers

Readiness = Callable[[], Awaitable[dict[str, bool]]]


@cache
def openapi_document() -> dict[str, Any]:
    text = (resources.files("workers.api") / "openapi.yaml").read_text()
    return dict(yaml.safe_load(text))


@cache
def wallboard_page() -> bytes:
    return (resources.files("workers.api") / "static" / "wallboard.html").read_bytes()


def build_app(
    context: ApiContext, auth: TokenAuth, readiness: Readiness, metrics: ApiMetrics | None = None
) -> web.Application:
    """All routes of the API process on one application."""
    handlers = Handlers(context)
    reports = ReportHandlers(context.reports)
    middlewares = [error_middleware, auth.middleware()]
    if metrics is not None:
        middlewares.insert(0, metrics.middleware())  # outermost: counts the final status
    app = web.Application(middlewares=middlewares)
    add = app.router
    add.add_get("/health", _health)
    add.add_get("/ready", _ready_handler(readiness))
    add.add_get("/openapi.json", _openapi)
    add.add_get("/wallboard", _wallboard)

    agent = "/api/v1/agents/{agent_id}"
    add.add_get("/api/v1/agents", handlers.list_agents)
    add.add_get(agent, handlers.get_agent)
    add.add_post(agent + "/login", handlers.login)
    add.add_post(agent + "/logout", handlers.logout)
    add.add_post(agent + "/ready", handlers.ready)
    add.add_post(agent + "/pause", handlers.pause)
    add.add_post(agent + "/wrapup/extend", handlers.extend_wrapup)
    add.add_post(agent + "/wrapup/finish", handlers.finish_wrapup)
    add.add_put(agent + "/skills", handlers.put_skills)
    add.add_patch(agent + "/skills", handlers.patch_skills)

    add.add_get("/api/v1/queues", handlers.list_queues)
    add.add_get("/api/v1/queues/{queue}", handlers.get_queue)
    add.add_get("/api/v1/calls", handlers.list_calls)
    add.add_get("/api/v1/calls/{call_id}", handlers.get_call)
    add.add_get("/api/v1/calls/{call_id}/decision", handlers.get_decision)
    add.add_get("/api/v1/wallboard", handlers.wallboard)
    add.add_get("/api/v1/reports/intervals", reports.intervals)
    add.add_get("/api/v1/reports/calls", reports.calls)
    add.add_get("/api/v1/reports/abandoned", reports.abandoned)
    add.add_get("/api/v1/events", handlers.events)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _ready_handler(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def ready(request: web.Request) -> web.Response:
        checks = await readiness()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    return ready


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(
        text=json.dumps(openapi_document(), indent=1), content_type="application/json", charset="utf-8"
    )


async def _wallboard(request: web.Request) -> web.Response:
    return web.Response(
        body=wallboard_page(),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
