"""The lab's own Redis client (the chaos faults' and the referee's) rides out a restart of
Redis: a 30-minute soak once died on a connection that redis_restarted had left dead."""

from __future__ import annotations

import asyncio
from pathlib import Path

from load_tests.demo import Demo
from load_tests.embedded import EmbeddedRedis


async def test_a_restart_of_redis_does_not_fail_the_labs_next_command(tmp_path: Path) -> None:
    async with EmbeddedRedis(tmp_path, appendonly=True) as server:
        redis = await Demo._lab_redis(Demo.__new__(Demo), server)
        try:
            await redis.set("k", "1")
            await server.stop(kill=True)

            async def start_again() -> None:
                await asyncio.sleep(1.0)
                await server.start()

            back = asyncio.create_task(start_again())
            assert await redis.get("k") == "1"  # waited for, on a new connection
            await back
        finally:
            await redis.aclose()
