"""The lab's Lua profiler (load_tests/lua_profile.py) over a real redis-server: the timed
library loads beside the production one, answers the same, and says where the time went."""

from __future__ import annotations

from redis.asyncio import Redis

from load_tests import lua_profile
from router.domain import AgentConfig
from router.store import NO_POSITION, RedisStateStore

T0 = 1_800_000_000.0


async def test_timed_scripts_answer_as_untimed_ones_and_report_their_time(redis: Redis) -> None:
    plain, timed = RedisStateStore(redis, "plain"), RedisStateStore(redis, "timed")
    lua_profile.time_scripts(timed.scripts)
    assert timed.scripts.library.startswith("acdprof_") and plain.scripts.library.startswith("acd_")
    answers = []
    for store in (plain, timed):
        await store.upsert_agent(AgentConfig(id="a1", skills={"x": 2}), T0)
        answers.append(await store.agent_presence("a1", "available", "", T0 + 1, NO_POSITION))
    assert answers[0] == answers[1]
    table = await lua_profile.report(redis, timed.keys.prefix, calls=1)
    rows = {line.split()[0] for line in table.splitlines()[1:]}
    assert {"op:agent_profile", "op:agent_presence", "reindex"} <= rows, table
    assert not await redis.exists(plain.keys.prefix + "lua_profile:us")
