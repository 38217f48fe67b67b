"""The `acd api` process: agent control, supervisor views, live updates and the wallboard.

Serves the API on ``api.host:api.port`` and, like every process, /metrics, /health and
/ready on ``http.host:http.port``. It holds its own AMI session (events off) for the
roster actions and reads and writes Redis through the admin store.

SIGTERM drains: live-update streams end, in-flight requests get a short grace, exit 0.
SIGHUP re-reads the configuration file's queues (for the service-level targets it shows).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from router.clock import Clock
from router.errors import AcdError, ConfigError
from router.settings import AcdSettings, load_settings
from router.store import RedisStateStore
from router.store.admin import AdminStore
from router.store.connect import open_redis
from workers.api.app import build_app
from workers.api.auth import TokenAuth
from workers.api.handlers import ApiContext
from workers.api.live import LiveFeed
from workers.api.metrics import ApiMetrics
from workers.api.roster import Roster, RosterGateway
from workers.api.settings import ApiSettings
from workers.api.views import Views
from workers.runtime import ProcessEndpoints, run_until_stopped, wait_or_stop

logger = logging.getLogger(__name__)

REQUEST_GRACE_S = 5.0
REDIS_CHECK_EVERY_S = 2.0


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
    ) -> None:
        self.settings = settings
        self.api = api
        self.redis = redis
        self.gateway = gateway
        self.stop_event = asyncio.Event()
        self.clock = clock
        self.admin = admin = AdminStore(redis, settings.site)
        self.views = Views(RedisStateStore(redis, settings.site), admin, settings.queue_map(), clock)
        self.feed = LiveFeed(self.views, api.push_interval_s)
        self.metrics = ApiMetrics(registry)
        self.metrics.track(lambda: self.feed.subscriber_count, lambda: gateway.connected)
        context = ApiContext(
            settings=api,
            views=self.views,
            admin=admin,
            roster=Roster(gateway, api.roster_queue),
            feed=self.feed,
            clock=clock,
            stop=self.stop_event,
        )
        auth = TokenAuth(api.require_token(), api.read_token, public_reads=api.public_reads)
        self.app = build_app(context, auth, self.readiness, self.metrics)
        self.redis_ok = True
        self.port = api.port
        self._runner: web.AppRunner | None = None

    async def readiness(self) -> dict[str, bool]:
        return {"redis": self.redis_ok, "ami": self.gateway.connected}

    def is_ready(self) -> bool:
        return self.redis_ok and self.gateway.ready

    async def start(self) -> None:
        # Like a routing worker at start-up: every configured agent has a profile (skills
        # edited through the API are kept), so the API works before any worker has run.
        await self.admin.apply_profiles(self.settings.agents, self.clock.now(), force=False)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=REQUEST_GRACE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.api.host, self.api.port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # port 0: learn the port we got
            self.port = server.sockets[0].getsockname()[1]
        logger.info(
            "API on http://%s:%s (wallboard: /wallboard, OpenAPI: /openapi.json)", self.api.host, self.port
        )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def watch_redis(self, stop: asyncio.Event) -> None:
        """Keep /ready honest about Redis."""
        while True:
            try:
                await self.redis.ping()
                self.redis_ok = True
            except (RedisError, OSError) as exc:  # the raw client's PING, not a store call
                if self.redis_ok:
                    logger.warning("Redis unavailable: %s", exc)
                self.redis_ok = False
            if await wait_or_stop(stop, REDIS_CHECK_EVERY_S):
                return

    async def reloads(self, reload: asyncio.Event, config_path: Path | None) -> None:
        """On SIGHUP: re-read the queues (service-level targets) and add new agents.

        An invalid file changes nothing. Re-applying the file's skills over API edits is
        the routing workers' reload (they own the agent profiles).
        """
        while True:
            await reload.wait()
            reload.clear()
            await self.reload_once(config_path)

    async def reload_once(self, config_path: Path | None) -> bool:
        if config_path is None:
            logger.warning("configuration reload asked for, but the API was started without --config")
            return False
        try:
            fresh = await asyncio.to_thread(load_settings, config_path)
            if not fresh.queues:
                raise ConfigError(f"{config_path}: no queues configured; add at least one under 'queues:'")
        except AcdError as exc:
            logger.error("configuration reload refused, nothing changed: %s", exc)
            return False
        self.views.queues = fresh.queue_map()
        try:
            await self.admin.apply_profiles(fresh.agents, self.clock.now(), force=False)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("configuration reload: new agents not written (Redis: %s)", exc)
        logger.info("configuration reloaded: queues %s", sorted(self.views.queues))
        return True

    async def run(
        self, stop: asyncio.Event, *, reload: asyncio.Event | None, config_path: Path | None
    ) -> None:
        background = [self.gateway.run(), self.watch_redis(stop)]
        if reload is not None:
            background.append(self.reloads(reload, config_path))
        try:
            await run_until_stopped(stop, draining=[self.feed.run(stop)], background=background)
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
    registry = CollectorRegistry()
    redis = await open_redis(settings.redis)
    gateway = RosterGateway(settings.ami, events=False)
    try:
        service = ApiService(settings, api, clock, redis, gateway, registry)
        endpoints = ProcessEndpoints(settings.http, registry, ready=service.is_ready)
        await service.start()
        try:
            await endpoints.start()
            if started is not None:
                started.set_result(service)
            await service.run(stop, reload=reload, config_path=config_path)
        finally:
            await service.stop()
            await endpoints.stop()
    finally:
        await gateway.close()
        await redis.aclose()


def load_api_process_settings(config: Path | None) -> tuple[AcdSettings, ApiSettings]:
    """The whole configuration, and its api section."""
    settings = load_settings(config)
    return settings, settings.api
