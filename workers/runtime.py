"""What every long-running process shares: logging, signals, and its HTTP endpoints.

Each process serves ``/metrics`` (Prometheus), ``/health`` (alive) and ``/ready`` (its
connections are up) on ``http.host:http.port``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from router.settings import HttpSettings

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers.

    Fields passed with ``extra=`` (``call_id``, ``agent_id``, ...) become top-level keys,
    so a shipper can index and search by call or agent.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", *, json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("aiokafka", "panoramisk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT only set ``stop``; the process then drains and exits 0."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


class ProcessEndpoints:
    """/metrics, /health and /ready for one process."""

    def __init__(
        self, settings: HttpSettings, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.ready = ready
        self.port = settings.port
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/ready", self._ready)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # port 0: learn the port we got
            self.port = server.sockets[0].getsockname()[1]
        logger.info("serving /metrics /health /ready on http://%s:%s", self.settings.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ready(self, request: web.Request) -> web.Response:
        ok = self.ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def run_process(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> int:
    """Run ``main(stop)`` with signal handling; exit code 0 on a clean stop."""

    async def runner() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await main(stop)

    asyncio.run(runner())
    return 0


async def run_until_stopped(
    stop: asyncio.Event,
    *,
    draining: list[Coroutine[Any, Any, None]],
    background: list[Coroutine[Any, Any, None]] = (),  # type: ignore[assignment]
    grace_s: float = SHUTDOWN_GRACE_S,
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
        _, late = await asyncio.wait(drainers, timeout=grace_s) if drainers else (set(), set())
        for task in [*late, *others]:
            if late and task in late:
                logger.warning("shutdown grace of %.0fs over: cancelling %s", grace_s, task.get_coro())
            task.cancel()
