"""Routing state in Redis, one store per job (see router/store/redis_store.py for the map)."""

from router.store.base import RedisSiteStore, shared_scripts
from router.store.callbacks import RedisCallbackStore
from router.store.chains import RedisChainStore
from router.store.fences import RedisFenceStore
from router.store.keys import Keys
from router.store.params import NO_POSITION, NewCall, OverflowMove, Position, ResyncGap
from router.store.redis_store import RedisStateStore
from router.store.replies import WrapUpEnded
from router.store.reporting import RedisReportStore
from router.store.routing import RedisRoutingStore
from router.store.summary import RedisSummaryStore
from router.store.timers import RedisLeaseStore, RedisTimerStore

__all__ = [
    "NO_POSITION",
    "Keys",
    "NewCall",
    "OverflowMove",
    "Position",
    "RedisCallbackStore",
    "RedisChainStore",
    "RedisFenceStore",
    "RedisLeaseStore",
    "RedisReportStore",
    "RedisRoutingStore",
    "RedisSiteStore",
    "RedisStateStore",
    "RedisSummaryStore",
    "RedisTimerStore",
    "ResyncGap",
    "WrapUpEnded",
    "shared_scripts",
]
