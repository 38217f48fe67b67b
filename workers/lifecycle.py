"""One lifecycle for every `acd` process: start order, readiness, reload, drain, stop order.

    starting  /metrics, /health and /ready are served first (a port in use fails here, as a
              configuration error); then the component opens its links in dependency
              order (Redis or PostgreSQL, Kafka topics, producer, consumer group, AMI), each one's close
              pushed on one AsyncExitStack
    running   the component's tasks, the link watchers and the reload loop run in one
              TaskGroup; /ready is 200 while every link probe holds
    draining  stop is set (SIGTERM): /ready answers 503; draining tasks finish their
              in-flight work within the grace period, the others are cancelled
    stopped   links closed in the reverse order of opening; the endpoints last

Only the entry point installs signal handlers: SIGTERM/SIGINT set ``stop``, SIGHUP sets
``reload``, and the lifecycle does the rest (one reload path for every process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis

from router.bus import KafkaClient, KafkaLink
from router.clock import Clock
from router.errors import AcdError, ConfigError
from router.postgres import Pool, PostgresLink, close_pool, dsn_target, open_postgres
from router.settings import AcdSettings, HttpSettings, load_settings
from router.store.connect import RedisLink, open_redis

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
# What a reload applies; every other section shapes connections made at start-up.
RELOADABLE = frozenset({"queues", "agents"})

Probe = Callable[[], bool]
Task = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # takes ``stop``
Reload = Callable[[AcdSettings], Awaitable[None]]


class ProcessState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Component:
    """What a process's ``open`` hands the lifecycle once its links are open.

    ``draining`` tasks watch ``stop`` and return once their in-flight work is done;
    ``background`` tasks are cancelled at stop; ``reload`` applies a validated file's
    queues and agents (None: nothing in this process reads them).
    """

    draining: Sequence[Task]
    background: Sequence[Task] = ()
    reload: Reload | None = None


class ProcessContext:
    """What ``open`` builds with: settings, clock, metrics registry, and where links go."""

    def __init__(self, lifecycle: ProcessLifecycle, stack: AsyncExitStack) -> None:
        self.settings = lifecycle.settings
        self.clock = lifecycle.clock
        self.registry = lifecycle.registry
        self.stack = stack
        self._lifecycle = lifecycle

    def link(self, name: str, probe: Probe) -> None:
        """Readiness: /ready holds only while ``probe()`` is true."""
        self._lifecycle.probes[name] = probe

    def probe(self, name: str) -> Probe:
        """A link's probe registered earlier (the API shows them on its own /ready)."""
        return self._lifecycle.probes[name]

    async def open(self, start: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[object]]) -> None:
        """Start a resource now; close it at stop, before what was opened earlier."""
        await start()
        self.stack.push_async_callback(close)

    async def redis(self) -> Redis:
        """The process's Redis client, watched by a PING for readiness."""
        client = await open_redis(self.settings.redis)
        self.stack.push_async_callback(client.aclose)
        watched = RedisLink(client, self.settings.redis.target)
        self.link("redis", lambda: watched.ready)
        self._lifecycle.watchers.append(watched.watch)
        return client

    def kafka(self, *clients: KafkaClient) -> KafkaLink:
        """A probe of the broker, asked every ``kafka.probe_interval_s`` in the background: the
        process's Kafka link is ready only while the broker answers; when it answers again
        after it did not, ``clients`` reconnect (``KafkaLink``)."""
        watched = KafkaLink(self.settings.kafka)
        watched.track(*clients)
        self._lifecycle.watchers.append(watched.watch)
        return watched

    async def postgres(self) -> Pool:
        """The process's PostgreSQL pool, watched by a ``SELECT 1`` for readiness."""
        settings = self.settings.postgres
        pool = await open_postgres(settings, f"acd {self._lifecycle.name}")
        self.stack.push_async_callback(close_pool, pool)
        watched = PostgresLink(pool, dsn_target(settings.require_dsn()))
        self.link("postgres", lambda: watched.ready)
        self._lifecycle.watchers.append(watched.watch)
        return pool


Open = Callable[[ProcessContext], Awaitable[Component]]


class ProcessLifecycle:
    """Runs one component from start to stop (see the module docstring)."""

    def __init__(
        self, name: str, settings: AcdSettings, clock: Clock, *, grace_s: float = SHUTDOWN_GRACE_S
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.grace_s = grace_s
        self.registry = CollectorRegistry()
        self.state = ProcessState.STARTING
        self.probes: dict[str, Probe] = {}
        self.watchers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.endpoints = ProcessEndpoints(settings.http, self.registry, self)

    def links(self) -> dict[str, bool]:
        return {name: bool(probe()) for name, probe in self.probes.items()}

    def ready(self) -> bool:
        return self.state is ProcessState.RUNNING and all(self.links().values())

    async def run(
        self,
        open_component: Open,
        stop: asyncio.Event,
        *,
        reload: asyncio.Event | None = None,
        config_path: Path | None = None,
    ) -> None:
        try:
            async with AsyncExitStack() as stack:
                await self.endpoints.start()
                stack.push_async_callback(self.endpoints.stop)
                component = await open_component(ProcessContext(self, stack))
                background = [task(stop) for task in component.background]
                background += [watch() for watch in self.watchers]
                if reload is not None:
                    background.append(self._reloads(reload, config_path, component.reload))
                self.state = ProcessState.RUNNING
                logger.info("acd %s running", self.name)
                await run_until_stopped(
                    stop,
                    draining=[task(stop) for task in component.draining],
                    background=background,
                    grace_s=self.grace_s,
                    on_stop=self._draining,
                )
        finally:
            self.state = ProcessState.STOPPED

    def _draining(self) -> None:
        if self.state is ProcessState.RUNNING:
            self.state = ProcessState.DRAINING
            logger.info("acd %s draining", self.name)

    async def _reloads(self, event: asyncio.Event, path: Path | None, apply: Reload | None) -> None:
        while True:
            await event.wait()
            event.clear()
            await self.reload_once(path, apply)

    async def reload_once(self, path: Path | None, apply: Reload | None) -> bool:
        """Re-read and validate the file; an invalid one is logged and changes nothing."""
        if path is None:
            logger.warning(
                "configuration reload asked for, but acd %s was started without --config", self.name
            )
            return False
        logger.info("configuration reload from %s", path)
        try:
            fresh = await asyncio.to_thread(load_settings, path)
            if not fresh.queues:
                raise ConfigError(f"{path}: no queues configured; add at least one under 'queues:'")
        except AcdError as exc:
            logger.error("configuration reload refused, nothing changed: %s", exc)
            return False
        ignored = [
            name
            for name in type(fresh).model_fields
            if name not in RELOADABLE and getattr(fresh, name) != getattr(self.settings, name)
        ]
        if ignored:
            logger.warning("configuration reload: changes to %s take effect only after a restart", ignored)
        if apply is None:
            logger.info("configuration checked: acd %s reads no queues or agents", self.name)
            return True
        try:
            await apply(fresh)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.error("configuration reload not applied (%s): send SIGHUP again once it is back", exc)
            return False
        return True


async def run_process(
    name: str,
    settings: AcdSettings,
    clock: Clock,
    stop: asyncio.Event,
    open_component: Open,
    *,
    reload: asyncio.Event | None = None,
    config_path: Path | None = None,
) -> None:
    """Run ``open_component``'s process until ``stop`` (see the module docstring)."""
    await ProcessLifecycle(name, settings, clock).run(
        open_component, stop, reload=reload, config_path=config_path
    )


class ProcessMain(Protocol):
    """A production process's main: run until ``stop``; ``reload`` (SIGHUP) re-reads ``config_path``."""

    def __call__(
        self,
        settings: AcdSettings,
        clock: Clock,
        stop: asyncio.Event,
        *,
        reload: asyncio.Event | None = None,
        config_path: Path | None = None,
    ) -> Coroutine[Any, Any, None]: ...


def process_main(name: str, open_component: Open) -> ProcessMain:
    """The `acd <name>` process: ``open_component`` run by the one lifecycle."""

    async def main(
        settings: AcdSettings,
        clock: Clock,
        stop: asyncio.Event,
        *,
        reload: asyncio.Event | None = None,
        config_path: Path | None = None,
    ) -> None:
        await run_process(name, settings, clock, stop, open_component, reload=reload, config_path=config_path)

    main.__doc__ = f"The `acd {name}` process."
    return main


async def run_until_stopped(
    stop: asyncio.Event,
    *,
    draining: list[Coroutine[Any, Any, None]],
    background: Sequence[Coroutine[Any, Any, None]] = (),
    grace_s: float = SHUTDOWN_GRACE_S,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Run tasks in one TaskGroup until ``stop``; then give ``draining`` tasks (which watch
    ``stop`` themselves and finish their in-flight work) ``grace_s`` before cancelling.
    A task that fails ends the whole group, and the process with it, loudly."""
    async with asyncio.TaskGroup() as group:
        drainers = [group.create_task(coro) for coro in draining]
        others = [group.create_task(coro) for coro in background]
        stopping = group.create_task(stop.wait())
        await asyncio.wait([stopping, *drainers], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        if on_stop is not None:
            on_stop()
        _, late = await asyncio.wait(drainers, timeout=grace_s) if drainers else (set(), set())
        for task in late:
            logger.warning("shutdown grace of %.0fs over: cancelling %s", grace_s, task.get_coro())
        for task in [*late, *others]:
            task.cancel()


class ProcessEndpoints:
    """/metrics, /health (alive, and the lifecycle state) and /ready (every link holds)."""

    def __init__(
        self, settings: HttpSettings, registry: CollectorRegistry, lifecycle: ProcessLifecycle
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.lifecycle = lifecycle
        self.port = settings.port
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/ready", self._ready)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        self.port = await serve(self._runner, self.settings.host, self.settings.port, key="http")
        logger.info("serving /metrics /health /ready on http://%s:%s", self.settings.host, self.port)
        if self.settings.port_file is not None:
            # Whoever started us with port 0 learns the port without racing for a free one.
            await asyncio.to_thread(_write_atomically, self.settings.port_file, f"{self.port}\n")

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "state": self.lifecycle.state.value})

    async def _ready(self, request: web.Request) -> web.Response:
        ok = self.lifecycle.ready()
        body = {"ready": ok, "state": self.lifecycle.state.value, "links": self.lifecycle.links()}
        return web.json_response(body, status=200 if ok else 503)


async def serve(runner: web.AppRunner, host: str, port: int, *, key: str, **site_options: Any) -> int:
    """Serve ``runner`` on ``host:port`` (section ``key``'s host and port); the port it got.

    A port in use, or a host that is not this machine's, is a configuration error: one
    line naming the setting, and exit status 2 rather than a restart loop.
    """
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, **site_options).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): {key}.port is in use by another "
            f"process or {key}.host is not an address of this machine; set ACD_{key.upper()}__PORT "
            f"(or {key}.port) to a free port"
        ) from None
    return int(runner.addresses[0][1])


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
