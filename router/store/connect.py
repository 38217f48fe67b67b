"""Opening the Redis connection, with an error that says what to fix; watching that it answers."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from router.errors import ConfigError, RedisUnavailableError
from router.link import PeriodicProbe
from router.settings import RedisSettings
from router.store.errors import UNAVAILABLE

logger = logging.getLogger(__name__)

PING_EVERY_S = 1.0
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_PROBES = 3


def link_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's own guards against a link that hangs (docs/operations.md, "Links that hang").

    Every command waits at most ``socket_timeout_s`` for its answer (redis-py then drops the
    connection: a late answer can never be read as the next command's); a connection idle
    longer than ``health_check_interval_s`` is PINGed before use; TCP keep-alive closes an
    idle connection whose peer vanished. No retries inside redis-py (its default when a
    client is built from a URL): the callers retry on ``RedisUnavailableError``.
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_connect_timeout_s,
        "health_check_interval": settings.health_check_interval_s,
    }
    if not settings.url.startswith("unix:"):  # keep-alive is TCP's (redis-py turns it on by default)
        options["socket_keepalive"] = bool(settings.tcp_keepalive_s)
        if settings.tcp_keepalive_s:
            options["socket_keepalive_options"] = keepalive_options(settings.tcp_keepalive_s)
    return options


def keepalive_options(idle_s: float) -> dict[int, int]:
    """Probes after ``idle_s`` of silence, KEEPALIVE_PROBES of them KEEPALIVE_INTERVAL_S apart
    (where the platform lets them be set: Linux has all three, macOS the first)."""
    wanted = {
        "TCP_KEEPIDLE": max(1, round(idle_s)),
        "TCP_KEEPINTVL": KEEPALIVE_INTERVAL_S,
        "TCP_KEEPCNT": KEEPALIVE_PROBES,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


async def open_redis(settings: RedisSettings) -> Redis:
    """A client that has answered PING; retries for ``startup_timeout_s`` while Redis starts."""
    password = settings.password.get_secret_value() if settings.password else None
    client = Redis.from_url(settings.url, password=password, decode_responses=True, **link_options(settings))
    deadline = time.monotonic() + settings.startup_timeout_s
    while True:
        try:
            await client.ping()
            return client
        except AuthenticationError as exc:
            await client.aclose()
            raise ConfigError(
                f"Redis at {settings.url} refused the password ({exc}): set ACD_REDIS__PASSWORD "
                "or redis.password_file to the server's requirepass"
            ) from None
        except (ConnectionError, TimeoutError, OSError) as exc:
            if time.monotonic() > deadline:
                await client.aclose()
                raise RedisUnavailableError(
                    f"cannot reach Redis at {settings.url} ({exc}): check that redis-server is "
                    "running and that ACD_REDIS__URL (redis.url) points at it"
                ) from None
            await asyncio.sleep(0.2)


class RedisLink(PeriodicProbe):
    """Whether Redis answers now (a PING every ``every_s``, answered within the client's
    ``socket_timeout_s``): a process's readiness probe."""

    errors = UNAVAILABLE

    def __init__(self, client: Redis, url: str, every_s: float = PING_EVERY_S) -> None:
        super().__init__("Redis", url, every_s)
        self.client = client
        self.url = url

    async def ask(self) -> None:
        await self.client.ping()
