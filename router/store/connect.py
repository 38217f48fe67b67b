"""Opening the Redis connection, with an error that says what to fix."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from router.errors import ConfigError, RedisUnavailableError
from router.settings import RedisSettings


async def open_redis(settings: RedisSettings) -> Redis:
    """A client that has answered PING; retries for ``startup_timeout_s`` while Redis starts."""
    password = settings.password.get_secret_value() if settings.password else None
    client = Redis.from_url(
        settings.url,
        password=password,
        decode_responses=True,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
    )
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
