"""Redis failures as the project's errors: callers decide on ``retriable``, not on redis-py types.

Only failures of the link or of the server's state are translated (connection refused or
lost, timeouts, a server loading its dataset, a replica that cannot take writes yet): the
same command can succeed later, so they become ``RedisUnavailableError`` (retriable). A
command Redis rejects for what it is (a script error, a wrong type) is a bug, not an
outage, and propagates unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ClusterDownError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.errors import RedisUnavailableError

# BusyLoadingError (a restarted server reading its dataset) is a redis-py ConnectionError;
# OSError covers the socket's own errors (ConnectionResetError, a connect timeout).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    TryAgainError,
    ClusterDownError,
    OSError,
)


def unavailable(exc: BaseException) -> RedisUnavailableError:
    """The project's error for ``exc``; the caller raises it ``from exc``."""
    return RedisUnavailableError(f"Redis unavailable: {str(exc) or type(exc).__name__}")


def _translated(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise unavailable(exc) from exc

    return call


def translates_redis_errors[T: type](cls: T) -> T:
    """Class decorator for a Redis adapter: every coroutine method raises
    ``RedisUnavailableError`` (chained to redis-py's error) when Redis cannot answer."""
    for name, member in list(vars(cls).items()):
        if inspect.iscoroutinefunction(member) and not name.startswith("__"):
            setattr(cls, name, _translated(member))
    return cls
