"""The `acd api` process: agent control, supervisor views, live updates and the wallboard.

Serves the API on ``api.host:api.port`` and, like every process, /metrics, /health and
/ready on ``http.host:http.port``. It holds its own AMI session (events off) for the
roster actions and reads and writes Redis through the admin store.

SIGTERM drains: live-update streams end, in-flight requests get a short grace, exit 0.
SIGHUP re-reads the configuration file's queues (for the service-level targets it shows).
Start order, readiness and the reload path are every process's (workers/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from router.clock import Clock
from router.errors import AcdError
from router.postgres import Pool, close_pool, dsn_target, open_postgres_on_demand
from router.settings import AcdSettings, load_settings
from router.store import RedisSummaryStore
from router.store.admin import AdminStore
from workers.api.app import build_app
from workers.api.auth import TokenAuth
from workers.api.handlers import ApiContext
from workers.api.live import LiveFeed
from workers.api.metrics import ApiMetrics
from workers.api.qa import QaHandlers
from workers.api.reports import ReportsContext
from workers.api.reviews import PostgresReviewStore
from workers.api.roster import Roster, RosterGateway
from workers.api.settings import ApiSettings
from workers.api.views import Views
from workers.lifecycle import Component, ProcessContext, run_process, serve
from workers.reports.request import ReportScope
from workers.reports.service import ReportService

logger = logging.getLogger(__name__)

REQUEST_GRACE_S = 5.0


class ApiService:
    """The API's HTTP server and the state behind it, for one site."""

    def __init__(
        self,
        settings: AcdSettings,
        api: ApiSettings,
        clock: Clock,
        redis: Redis,
        gateway: RosterGateway,
        registry: CollectorRegistry,
        redis_ready: Callable[[], bool] = lambda: True,
        postgres: Pool | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.redis = redis
        self.gateway = gateway
        self.stop_event = asyncio.Event()
        self.clock = clock
        zone = settings.timezone or "UTC"
        self.admin = admin = AdminStore(redis, settings.site, timezone=zone)
        summary = RedisSummaryStore(redis, settings.site, timezone=zone)
        self.views = Views(summary, admin, settings.queue_map(), clock)
        self.feed = LiveFeed(self.views, api.push_interval_s)
        self.metrics = ApiMetrics(registry)
        self.metrics.track(lambda: self.feed.subscriber_count, lambda: gateway.connected)
        self.reports = ReportsContext(ReportScope.from_settings(settings))
        reviews = None
        if postgres is not None:
            where = dsn_target(settings.postgres.require_dsn())
            self.reports.service = ReportService(postgres, where, self.reports.scope)
            reviews = PostgresReviewStore(postgres, where, settings.site)
        self.qa = QaHandlers(settings.qa.form, reviews)
        context = ApiContext(
            settings=api,
            views=self.views,
            admin=admin,
            roster=Roster(gateway, api.roster_queue),
            feed=self.feed,
            clock=clock,
            stop=self.stop_event,
            reports=self.reports,
        )
        auth = TokenAuth(
            api.require_token(), api.read_token, public_reads=api.public_reads, reviewer_token=api.reviewer_token
        )
        self.app = build_app(context, auth, self.readiness, self.metrics, self.qa)
        self.redis_ready = redis_ready
        self.port = api.port
        self._runner: web.AppRunner | None = None

    async def readiness(self) -> dict[str, bool]:
        return {"redis": self.redis_ready(), "ami": self.gateway.connected}

    async def start(self) -> None:
        # Like a routing worker at start-up: every configured agent has a profile (skills
        # edited through the API are kept), so the API works before any worker has run.
        await self.admin.apply_profiles(self.settings.agents, self.clock.now(), force=False)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=REQUEST_GRACE_S)
        self.port = await serve(self._runner, self.api.host, self.api.port, key="api")
        logger.info(
            "API on http://%s:%s (wallboard: /wallboard, OpenAPI: /openapi.json)", self.api.host, self.port
        )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def apply_config(self, fresh: AcdSettings) -> None:
        """A reload's queues (the service-level targets shown) and new agents.

        Re-applying the file's skills over API edits is the routing workers' reload (they
        own the agent profiles).
        """
        self.views.queues = fresh.queue_map()
        self.reports.scope = ReportScope.from_settings(fresh)
        if self.reports.service is not None:
            self.reports.service.configure(self.reports.scope)
        try:
            await self.admin.apply_profiles(fresh.agents, self.clock.now(), force=False)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("configuration reload: new agents not written (Redis: %s)", exc)
        logger.info("configuration reloaded: queues %s", sorted(self.views.queues))

    def component(self) -> Component:
        """Live-update streams end at stop (in-flight requests get ``REQUEST_GRACE_S`` when the
        server closes); the AMI link just stops."""
        return Component(
            draining=[self._feed],
            background=[lambda stop: self.gateway.run()],
            reload=self.apply_config,
        )

    async def _feed(self, stop: asyncio.Event) -> None:
        try:
            await self.feed.run(stop)
        finally:
            self.stop_event.set()


async def run_api(
    settings: AcdSettings,
    api: ApiSettings,
    clock: Clock,
    stop: asyncio.Event,
    *,
    reload: asyncio.Event | None = None,
    config_path: Path | None = None,
    started: asyncio.Future[ApiService] | None = None,
) -> None:
    """The `acd api` process; ``started`` (for tests) gets the service once it listens."""
    api.require_token()

    async def open_api(ctx: ProcessContext) -> Component:
        """Redis, AMI, then the API's own port; ready while Redis answers and Asterisk takes
        actions."""
        redis = await ctx.redis()
        gateway = RosterGateway(settings.ami, events=False)
        ctx.stack.push_async_callback(gateway.close)
        ctx.link("ami", lambda: gateway.ready)
        postgres = await reports_pool(ctx)
        service = ApiService(
            settings, api, ctx.clock, redis, gateway, ctx.registry, ctx.probe("redis"), postgres
        )
        await ctx.open(service.start, service.stop)
        if started is not None:
            started.set_result(service)
        return service.component()

    await run_process("api", settings, clock, stop, open_api, reload=reload, config_path=config_path)


async def reports_pool(ctx: ProcessContext) -> Pool | None:
    """With a ``postgres`` DSN, a pool for the reports that connects on first use: the API
    starts, and stays ready, whether PostgreSQL answers or not (its other routes do not need
    it); without one, None, and the reports routes answer 503."""
    dsn = ctx.settings.postgres.dsn
    if dsn is None or not dsn.get_secret_value():
        return None
    pool = await open_postgres_on_demand(ctx.settings.postgres, "acd api")
    ctx.stack.push_async_callback(close_pool, pool)
    return pool


def load_api_process_settings(config: Path | None) -> tuple[AcdSettings, ApiSettings]:
    """The whole configuration, and its api section."""
    settings = load_settings(config)
    return settings, settings.api
