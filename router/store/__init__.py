"""Routing state in Redis."""

from router.store.chains import RedisChainStore
from router.store.keys import Keys
from router.store.redis_store import (
    NO_POSITION,
    NewCall,
    Outcome,
    OverflowMove,
    Position,
    RedisStateStore,
    WrapUpEnded,
)

__all__ = [
    "NO_POSITION",
    "Keys",
    "NewCall",
    "Outcome",
    "OverflowMove",
    "Position",
    "RedisChainStore",
    "RedisStateStore",
    "WrapUpEnded",
]
