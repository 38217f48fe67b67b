"""Scripts asked for together go to Redis in one round trip, with the same answers and the
same state as one at a time (real redis-server)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig, SkillRequirement
from router.errors import RedisUnavailableError
from router.store import NO_POSITION, NewCall, RedisStateStore
from router.store.replies import LeaseGrant
from router.store.scripts import ScriptFailedError

T0 = 1_800_000_000.0


def new_call(call_id: str, at: float) -> NewCall:
    return NewCall(
        call_id=call_id,
        queue="q",
        priority=0,
        priority_explicit=False,
        requirements=None,
        channel=f"PJSIP/trunk-{call_id}",
        entered_at=at,
        relax_due=None,
        overflow_due=None,
        sl_threshold=20.0,
        wrapup_s=0.0,
    )


async def a_day(store: RedisStateStore, *, together: bool) -> list[object]:
    """Agents log in, calls arrive; each step's operations concurrently or one by one."""
    agents = [AgentConfig(id=f"a{n}", skills={"x": n % 5 + 1}) for n in range(12)]
    steps = [
        [store.upsert_agent(agent, T0) for agent in agents],
        [store.agent_presence(agent.id, "available", "", T0 + n, NO_POSITION) for n, agent in enumerate(agents)],
        [store.enqueue(new_call(f"c{n}", T0 + 20 + n), NO_POSITION) for n in range(8)],
        [store.candidates((SkillRequirement(skill="x", min_level=3),), limit=4)],
        [store.reserve(f"c{n}", f"a{n}", f"o{n}", T0 + 40, T0 + 50, "{}") for n in range(8)],
    ]
    answers: list[object] = []
    for step in steps:
        if together:
            answers.extend(await asyncio.gather(*step))
        else:
            for operation in step:
                answers.append(await operation)
    return answers


async def dump(redis: Redis, site: str) -> dict[str, object]:
    state: dict[str, object] = {}
    for key in sorted(await redis.keys(f"acd:{{{site}}}:*")):
        kind = await redis.type(key)
        local = key.split("}:", 1)[1]
        if kind == "hash":
            state[local] = await redis.hgetall(key)
        elif kind == "zset":
            state[local] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            state[local] = sorted(await redis.smembers(key))
    return state


async def test_together_is_one_round_trip_per_step_with_the_same_answers_and_state(redis: Redis) -> None:
    alone, together = RedisStateStore(redis, "alone"), RedisStateStore(redis, "together")
    one_by_one = await a_day(alone, together=False)
    batched = await a_day(together, together=True)
    assert batched == one_by_one
    assert await dump(redis, "together") == await dump(redis, "alone")
    assert together.scripts.round_trips == 5  # one per step
    assert alone.scripts.round_trips == 12 + 12 + 8 + 1 + 8


async def test_a_failing_operation_fails_alone(redis: Redis) -> None:
    store = RedisStateStore(redis, "failing")
    good = store.scripts.run("lease", "timer_lease", "w1", 1000)
    bad = store.scripts.run("candidates", "this is not JSON", 1, "[]", 10)
    answers = await asyncio.gather(good, bad, return_exceptions=True)
    assert LeaseGrant.parse(answers[0]).token > 0  # the lease's fencing token
    assert isinstance(answers[1], ScriptFailedError) and "candidates" in str(answers[1])
    assert store.scripts.round_trips == 1


async def test_redis_down_reaches_every_waiting_caller() -> None:
    store = RedisStateStore(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), "down")
    calls = [store.scripts.run("lease", "timer_lease", f"w{n}", 1000) for n in range(3)]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(answer, RedisUnavailableError) and answer.retriable for answer in answers), answers
    with pytest.raises(RedisUnavailableError):
        await store.scripts.run("lease", "timer_lease", "w9", 1000)


async def test_a_redis_that_lost_the_library_is_given_it_again(redis: Redis) -> None:
    """Redis restarted empty (or flushed): the scripts' library is loaded again on first use,
    for a script on its own and for a batch, and the call is made."""
    store = RedisStateStore(redis, "reloaded")
    assert LeaseGrant.parse(await store.scripts.run("lease", "timer_lease", "w1", 1000)).token > 0
    await redis.function_flush()
    assert LeaseGrant.parse(await store.scripts.run("lease", "collector_lease", "w1", 1000)).token > 0
    await redis.function_flush()
    tokens = await asyncio.gather(*(store.scripts.run("lease", f"lease{n}", "w1", 1000) for n in range(3)))
    assert all(LeaseGrant.parse(token).token > 0 for token in tokens)
    # FUNCTION LIST answers a flat [field, value, ...] list per library
    listed = await redis.function_list()
    libraries = [dict(zip(entry[::2], entry[1::2], strict=True))["library_name"] for entry in listed]
    assert libraries == [store.scripts.library]


def test_two_versions_of_the_scripts_are_two_libraries() -> None:
    """Processes of two versions side by side (a rolling upgrade) never call each other's code."""
    from router.store.scripts import library_text

    name, code = library_text(["lease", "read"])
    assert name == library_text(["lease", "read"])[0]
    assert name != library_text(["lease"])[0]
    assert code.startswith(f"#!lua name={name}\n")
