"""The API's aiohttp application: routes, middlewares, the OpenAPI document, the wallboard.

The OpenAPI description is a static document kept next to the handlers
(``openapi.yaml``); a test checks that every route here is described there and that
nothing described is missing here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from router.settings import QaForm
from workers.api.auth import TokenAuth
from workers.api.errors import error_middleware
from workers.api.handlers import ApiContext, Handlers
from workers.api.metrics import ApiMetrics
from workers.api.qa import QaHandlers, scores_schema
from workers.api.reports import ReportHandlers
from workers.api.schedule import ScheduleHandlers

Readiness = Callable[[], Awaitable[dict[str, bool]]]


@cache
def _openapi_yaml() -> dict[str, Any]:
    text = (resources.files("workers.api") / "openapi.yaml").read_text()
    return dict(yaml.safe_load(text))


@cache
def openapi_document(form: QaForm = QaForm()) -> dict[str, Any]:  # noqa: B008 (frozen, hashable)
    """The API's description; a review's scores as the site's review form defines them."""
    document = copy.deepcopy(_openapi_yaml())
    document["components"]["schemas"]["QaScores"] = scores_schema(form)
    return document


@cache
def wallboard_page() -> bytes:
    return (resources.files("workers.api") / "static" / "wallboard.html").read_bytes()


def build_app(
    context: ApiContext,
    auth: TokenAuth,
    readiness: Readiness,
    metrics: ApiMetrics | None = None,
    qa: QaHandlers | None = None,
) -> web.Application:
    """All routes of the API process on one application."""
    handlers = Handlers(context)
    qa = qa or QaHandlers(QaForm(), None)
    reports = ReportHandlers(context.reports)
    middlewares = [error_middleware, auth.middleware()]
    if metrics is not None:
        middlewares.insert(0, metrics.middleware())  # outermost: counts the final status
    app = web.Application(middlewares=middlewares)
    add = app.router
    add.add_get("/health", _health)
    add.add_get("/ready", _ready_handler(readiness))
    add.add_get("/openapi.json", _openapi_handler(qa.form))
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
    schedule = ScheduleHandlers(lambda: context.views.queues, context.views.schedule, context.clock)
    add.add_post("/api/v1/queues/{queue}/schedule-override", schedule.put_override)
    add.add_delete("/api/v1/queues/{queue}/schedule-override", schedule.clear_override)
    add.add_get("/api/v1/calls", handlers.list_calls)
    add.add_get("/api/v1/callbacks", handlers.list_callbacks)
    add.add_get("/api/v1/calls/{call_id}", handlers.get_call)
    add.add_get("/api/v1/calls/{call_id}/decision", handlers.get_decision)
    add.add_get("/api/v1/wallboard", handlers.wallboard)
    add.add_get("/api/v1/reports/intervals", reports.intervals)
    add.add_get("/api/v1/reports/calls", reports.calls)
    add.add_get("/api/v1/reports/abandoned", reports.abandoned)
    add.add_get("/api/v1/events", handlers.events)

    # Quality reviews (reviewer token only: workers/api/auth.py).
    add.add_get("/api/v1/qa/form", qa.get_form)
    add.add_get("/api/v1/qa/reviews", qa.list_reviews)
    add.add_post("/api/v1/qa/reviews/{call_id}", qa.post_review)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _ready_handler(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def ready(request: web.Request) -> web.Response:
        checks = await readiness()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    return ready


def _openapi_handler(form: QaForm) -> Callable[[web.Request], Awaitable[web.Response]]:
    text = json.dumps(openapi_document(form), indent=1)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="application/json", charset="utf-8")

    return openapi


async def _wallboard(request: web.Request) -> web.Response:
    return web.Response(
        body=wallboard_page(),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
