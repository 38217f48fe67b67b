"""Opening the Redis connection, with an error that says what to fix; watching that it answers.

Every Redis client of the processes is opened here: one Redis at ``redis.url``, or, with
``redis.sentinels``, redis-py's Sentinel client for the primary the sentinels name. That
client asks the sentinels for the primary whenever it opens a connection, and drops a
connection whose server answers READONLY (a primary demoted to a replica) with a
ConnectionError: after a failover, the callers see retriable ``RedisUnavailableError``s
until their next attempt reaches the promoted replica. Which primary: the one named by the
sentinel with the newest configuration (``LatestConfigSentinel``), not the first to answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
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
    client = sentinel_client(settings) if settings.sentinels else direct_client(settings)
    deadline = time.monotonic() + settings.startup_timeout_s
    while True:
        try:
            await client.ping()
            return client
        except AuthenticationError as exc:
            await client.aclose()
            raise ConfigError(
                f"Redis at {settings.target} refused the password ({exc}): set ACD_REDIS__PASSWORD "
                "or redis.password_file to the server's requirepass (the sentinels' own: "
                "redis.sentinel_password_file)"
            ) from None
        except (ConnectionError, TimeoutError, OSError) as exc:
            if time.monotonic() > deadline:
                await client.aclose()
                raise RedisUnavailableError(
                    f"cannot reach Redis at {settings.target} ({exc}): {_fix(settings)}"
                ) from None
            await asyncio.sleep(0.2)


def _fix(settings: RedisSettings) -> str:
    if settings.sentinels:
        return (
            "check that the sentinels run, that ACD_REDIS__SENTINELS (redis.sentinels) lists them and "
            "that they monitor a primary named ACD_REDIS__SENTINEL_MASTER (redis.sentinel_master)"
        )
    return "check that redis-server is running and that ACD_REDIS__URL (redis.url) points at it"


def direct_client(settings: RedisSettings) -> Redis:
    """One Redis server at ``settings.url``."""
    password = settings.password.get_secret_value() if settings.password else None
    return Redis.from_url(settings.url, password=password, decode_responses=True, **link_options(settings))


class LatestConfigSentinel(Sentinel):
    """Asks every sentinel and follows the one whose configuration is newest.

    redis-py takes the first sentinel that names a primary it thinks is up. Right after a
    failover, a sentinel that has not heard of it yet (the others tell it within about 2 s)
    still names the old primary; if that server is back by then (restarted from its
    append-only file, a primary again until the sentinels demote it 10-15 s later), a
    process that asked that sentinel writes there, and what it wrote is lost when the old
    primary is made a replica. Each failover raises the configuration epoch, so the highest
    ``config-epoch`` among the answers names the current primary. The sentinels are asked
    side by side, so a new connection waits for the slowest of them (at most the socket
    timeout, for one that hangs) instead of the first.

    Overrides redis-py's ``discover_master``, which its ``SentinelConnectionPool`` calls for
    every new connection (pinned below 9 in pyproject.toml; tests/test_redis_sentinel.py
    fails if the pool stops calling it)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        answers = await asyncio.gather(*(s.sentinel_masters() for s in self.sentinels), return_exceptions=True)
        states: list[dict[str, Any]] = []
        errors: list[str] = []
        for sentinel, answer in zip(self.sentinels, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, (ConnectionError, TimeoutError)):
                    raise answer
                errors.append(f"{sentinel} - {answer}")
                continue
            state = answer.get(service_name) if isinstance(answer, dict) else None
            if state and self.check_master_state(state, service_name):
                states.append(state)
        if not states:
            raise MasterNotFoundError(f"No master found for {service_name!r}: {', '.join(errors) or 'none named one'}")
        newest = max(states, key=lambda state: int(state.get("config-epoch", 0)))
        return newest["ip"], int(newest["port"])


class SentinelMaster(Redis):
    """The primary's client; closing it also closes its connections to the sentinels
    (redis-py leaves those to whoever made the ``Sentinel``)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool = self.connection_pool
            assert isinstance(pool, SentinelConnectionPool)
            await pool.sentinel_manager.aclose()


def sentinel_client(settings: RedisSettings) -> Redis:
    """The primary that the sentinels name, re-asked on every new connection (redis-py's
    ``SentinelConnectionPool``). The link options apply to the primary and to the
    sentinels alike, and neither retries inside redis-py."""
    options = link_options(settings)
    sentinel_options: dict[str, Any] = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    if settings.sentinel_password is not None:
        sentinel_options["password"] = settings.sentinel_password.get_secret_value()
    sentinel = LatestConfigSentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(
        settings.sentinel_master, redis_class=SentinelMaster, decode_responses=True, **options, **node_options(settings)
    )
    return client


def node_options(settings: RedisSettings) -> dict[str, Any]:
    """What ``url`` says beside where the server is (database, user, password, TLS and
    query options), for the servers the sentinels name."""
    options: dict[str, Any] = dict(parse_url(settings.url))
    for where in ("host", "port", "path", "connection_class"):
        options.pop(where, None)
    if settings.url.startswith("rediss:"):
        options["ssl"] = True  # SentinelConnectionPool's switch to its TLS connection class
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    return options


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

    async def lost(self) -> None:
        """Drop the connections idle in the pool: they went through the link that stopped
        answering, and a link that hangs (a black hole: nothing closed) may leave them dead
        for good; each would cost the caller who takes it ``socket_timeout_s``, one after
        another, after the link is back. They reconnect when next taken; a connection in
        use times out on its own."""
        await self._drop_idle_connections()

    async def recovered(self) -> None:
        """Again, for connections made while the link hung and left idle since."""
        await self._drop_idle_connections()

    async def _drop_idle_connections(self) -> None:
        try:
            await self.client.connection_pool.disconnect(inuse_connections=False)
        except UNAVAILABLE as exc:  # closing a dead connection can time out: it is dropped anyway
            logger.debug("Redis at %s: idle connections dropped (%s)", self.url, exc)
