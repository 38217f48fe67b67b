"""Every store of one site in one object, for the lab and the tests.

The lab and the tests drive and inspect the whole state from outside (enqueue a call, read
its hash, the queue's counters, the decisions), so they take all of it; product code takes
only the store it uses: router.store.routing (the engine, the matcher, the overflows, the
dispatcher), router.store.timers (timer work, recovery, leases), router.store.summary (the
collector, the API), router.store.reporting (load-test reports) and router.store.fences
(the routing workers' fencing marks).
"""

from __future__ import annotations

from router.store.callbacks import RedisCallbackStore
from router.store.errors import translates_redis_errors
from router.store.fences import RedisFenceStore
from router.store.reporting import RedisReportStore
from router.store.routing import RedisRoutingStore
from router.store.summary import RedisSummaryStore
from router.store.timers import RedisTimerStore


@translates_redis_errors
class RedisStateStore(
    RedisRoutingStore, RedisTimerStore, RedisSummaryStore, RedisReportStore, RedisCallbackStore, RedisFenceStore
):
    """All of one site's routing state, over one script runner (so its work batches)."""
