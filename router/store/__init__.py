"""Routing state in Redis."""

from router.store.keys import Keys
from router.store.redis_store import NO_POSITION, Outcome, Position, RedisStateStore, WrapUpEnded

__all__ = ["NO_POSITION", "Keys", "Outcome", "Position", "RedisStateStore", "WrapUpEnded"]
