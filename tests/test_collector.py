"""The state collector over a real redis-server: agents by queue and state, queue targets,
staffing advice, and one exporter at a time."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis

from router import erlang, erlang_a
from router.domain import (
    AgentConfig,
    AnyOf,
    QueueConfig,
    QueueStaffing,
    ServiceLevelTarget,
    SkillRequirement,
)
from router.metrics import RoutingMetrics, StateGauges
from router.schedule import BusinessHours, ManualOverride
from router.store import NO_POSITION, NewCall, RedisStateStore
from router.store.schedule import RedisScheduleStore
from workers.collector import StateCollector

T0 = 1_800_000_000.0

QUEUES = (
    QueueConfig(
        name="billing",
        requirements=(SkillRequirement(skill="billing", min_level=3),),
        staffing=QueueStaffing(patience_s=90),
    ),
    QueueConfig(
        name="support",
        requirements=(SkillRequirement(skill="support", min_level=2),),
        service_level=ServiceLevelTarget(
            threshold_s=12.5, target=0.9, formula="answered_within_over_answered"
        ),
        wrapup_s=10,
    ),
    QueueConfig(
        name="spanish",
        requirements=(
            SkillRequirement(skill="spanish", min_level=3),
            AnyOf(any=(SkillRequirement(skill="billing"), SkillRequirement(skill="support"))),
        ),
    ),
    QueueConfig(name="anyone"),
)


@dataclass
class FakeClock:
    at: float = T0
    time_scale: float = 1.0

    def now(self) -> float:
        return self.at

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds


@pytest.fixture
async def store(redis: Redis) -> RedisStateStore:
    return RedisStateStore(redis, "col")


def collector(
    store: RedisStateStore, clock: FakeClock | None = None
) -> tuple[StateCollector, CollectorRegistry]:
    registry = CollectorRegistry()
    return StateCollector(store, store, StateGauges(registry), QUEUES, clock or FakeClock()), registry


async def agent(store: RedisStateStore, agent_id: str, skills: dict[str, int], state: str) -> None:
    await store.upsert_agent(AgentConfig(id=agent_id, skills=skills), T0)
    if state != "logged_out":
        await store.agent_presence(agent_id, state, "break" if state == "paused" else "", T0, NO_POSITION)


async def enqueue(store: RedisStateStore, call_id: str, queue: str, at: float) -> None:
    call = NewCall(call_id, queue, 0, False, None, f"PJSIP/trunk-{call_id}", at, None, None, 20.0, 0.0)
    assert (await store.enqueue(call, NO_POSITION)).status == "queued"


async def test_agents_count_in_every_queue_whose_base_requirements_they_meet(store: RedisStateStore) -> None:
    await agent(store, "a1", {"billing": 5}, "available")
    await agent(store, "a2", {"billing": 2, "support": 3}, "paused")
    await agent(store, "a3", {"spanish": 4, "billing": 1}, "logged_out")
    await agent(store, "a4", {"billing": 3, "spanish": 3}, "available")
    await enqueue(store, "c1", "billing", T0)
    offer = await store.reserve("c1", "a4", "o1", T0, T0 + 10, json.dumps({}))
    assert offer.status == "ok"
    col, registry = collector(store)
    await col.collect_once(1.0)

    def agents(queue: str, state: str) -> float | None:
        return registry.get_sample_value("acd_queue_agents", {"queue": queue, "state": state})

    assert agents("billing", "available") == 1 and agents("billing", "reserved") == 1
    assert agents("billing", "paused") == 0  # a2's billing 2 is below the queue's 3
    assert agents("support", "paused") == 1 and agents("support", "available") == 0
    assert agents("spanish", "logged_out") == 1 and agents("spanish", "reserved") == 1
    assert agents("anyone", "available") == 1 and agents("anyone", "logged_out") == 1
    assert sum(agents("anyone", s) or 0 for s in ("available", "paused", "logged_out", "reserved")) == 4
    assert registry.get_sample_value("acd_agents", {"state": "reserved"}) == 1
    staffed = {
        q.name: registry.get_sample_value("acd_staffing_agents_staffed", {"queue": q.name}) for q in QUEUES
    }
    assert staffed == {"billing": 2, "support": 0, "spanish": 1, "anyone": 2}


async def test_calls_waiting_and_oldest_wait_per_queue(store: RedisStateStore) -> None:
    await enqueue(store, "c1", "billing", T0)
    await enqueue(store, "c2", "billing", T0 + 30)
    col, registry = collector(store, FakeClock(T0 + 45))
    await col.collect_once(1.0)
    assert registry.get_sample_value("acd_calls_waiting", {"queue": "billing"}) == 2
    assert registry.get_sample_value("acd_oldest_wait_seconds", {"queue": "billing"}) == 45
    assert registry.get_sample_value("acd_calls_waiting", {"queue": "support"}) == 0


async def test_queue_targets_name_the_histogram_bucket_at_each_threshold(store: RedisStateStore) -> None:
    col, registry = collector(store)
    await col.collect_once(1.0)
    support = {"queue": "support", "bucket": "12.5"}
    assert registry.get_sample_value("acd_queue_service_level_threshold_seconds", support) == 12.5
    assert registry.get_sample_value("acd_queue_service_level_target_ratio", {"queue": "support"}) == 0.9
    formula = {"queue": "support", "formula": "answered_within_over_answered"}
    assert registry.get_sample_value("acd_queue_service_level_formula_info", formula) == 1
    default = {"queue": "billing", "bucket": "20.0"}
    assert registry.get_sample_value("acd_queue_service_level_threshold_seconds", default) == 20
    # ... and the routing workers' wait histograms have a bucket with exactly that label.
    routing = CollectorRegistry()
    RoutingMetrics(routing, [q.service_level.threshold_s for q in QUEUES], queues=[q.name for q in QUEUES])
    text = generate_latest(routing).decode()
    assert 'acd_call_answer_wait_seconds_bucket{le="12.5",queue="support"} 0.0' in text
    assert 'acd_call_abandon_wait_seconds_bucket{le="20.0",queue="billing"} 0.0' in text


async def test_only_the_lease_holder_exports_state(store: RedisStateStore) -> None:
    await agent(store, "a1", {"billing": 5}, "available")
    first, first_registry = collector(store)
    second, second_registry = collector(store)
    await first.collect_once(1.0)
    await second.collect_once(1.0)
    assert first.leader and not second.leader
    assert first_registry.get_sample_value("acd_agents", {"state": "available"}) == 1
    assert generate_latest(second_registry).decode().count("\nacd_") == 0  # help and type lines only


async def test_staffing_advice_follows_offered_calls_and_handle_time(
    store: RedisStateStore, redis: Redis
) -> None:
    clock = FakeClock()
    col, registry = collector(store, clock)
    stats = store.keys.stats("support")
    await redis.hset(stats, mapping={"offered": 0, "completed": 0, "talk_sum": 0})
    await col.collect_once(1.0)
    assert (
        registry.get_sample_value("acd_staffing_agents_needed", {"queue": "support"}) is None
    )  # no data yet
    clock.at += 300
    # 20 calls in 5 minutes = 240 an hour; 170 s talk + 10 s wrap-up = 180 s handle time.
    await redis.hset(stats, mapping={"offered": 20, "completed": 10, "talk_sum": 1700})
    await col.collect_once(1.0)

    def gauge(name: str) -> float | None:
        return registry.get_sample_value(name, {"queue": "support"})

    expected = erlang.agents_needed(240, 180, 0.9, 12.5)
    assert gauge("acd_staffing_agents_needed") == expected.agents
    assert gauge("acd_staffing_arrival_rate_per_second") == pytest.approx(240 / 3600)
    assert gauge("acd_staffing_handle_time_seconds") == pytest.approx(180)
    assert gauge("acd_staffing_traffic_erlangs") == pytest.approx(12.0)
    assert (
        registry.get_sample_value("acd_staffing_model_info", {"queue": "support", "model": "erlang-c"}) == 1
    )
    assert gauge("acd_staffing_abandon_ratio") is None  # Erlang C: nobody gives up


async def test_staffing_advice_counts_abandonment_where_the_queue_configures_a_patience(
    store: RedisStateStore, redis: Redis
) -> None:
    clock = FakeClock()
    col, registry = collector(store, clock)
    stats = store.keys.stats("billing")
    await redis.hset(stats, mapping={"offered": 0, "completed": 0, "talk_sum": 0})
    await col.collect_once(1.0)
    clock.at += 600
    # 60 calls in 10 minutes = 360 an hour, 180 s handle time: 18 Erlangs, patience 90 s.
    await redis.hset(stats, mapping={"offered": 60, "completed": 30, "talk_sum": 5400})
    await col.collect_once(1.0)

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"queue": "billing", **labels})

    expected = erlang_a.agents_needed(360, 180, 90, 0.8, 20)
    assert gauge("acd_staffing_agents_needed") == expected.agents
    assert expected.agents < erlang.agents_needed(360, 180, 0.8, 20).agents  # abandons take load off
    assert gauge("acd_staffing_abandon_ratio") == pytest.approx(expected.abandon_rate)
    assert gauge("acd_staffing_model_info", model="erlang-a") == 1
    assert gauge("acd_staffing_model_info", model="erlang-c") is None


async def test_ten_thousand_agents_come_back_as_a_few_skill_profiles(store: RedisStateStore) -> None:
    profiles = [{"billing": level} for level in range(1, 6)] + [
        {"support": level, "spanish": 3} for level in range(1, 6)
    ]
    ids = [f"agent{n:05d}" for n in range(10_000)]
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        await asyncio.gather(
            *(store.upsert_agent(AgentConfig(id=i, skills=profiles[int(i[5:]) % 10]), T0) for i in chunk)
        )
        if start < 1000:
            await asyncio.gather(*(store.agent_presence(i, "available", "", T0, NO_POSITION) for i in chunk))
    summary = await store.collector_summary()
    assert len(summary.profiles) == 2 * len(profiles)  # each skill set logged out and available
    assert summary.agents == {"logged_out": 9_000, "available": 1_000}
    col, registry = collector(store)
    await col.collect_once(1.0)
    assert registry.get_sample_value("acd_queue_agents", {"queue": "billing", "state": "available"}) == 300
    assert registry.get_sample_value("acd_queue_agents", {"queue": "spanish", "state": "logged_out"}) == 4_500
    assert registry.get_sample_value("acd_queue_agents", {"queue": "anyone", "state": "logged_out"}) == 9_000


async def test_queue_open_follows_business_hours_and_supervisor_overrides(store: RedisStateStore) -> None:
    # T0 is Friday 08:00 UTC: before 09:00 opening.
    hours = BusinessHours(timezone="UTC", weekly={"fri": ("09:00-17:00",)}, closed_target="acd-closed,s,1")
    clock = FakeClock()
    registry = CollectorRegistry()
    queues = (QueueConfig(name="sales", hours=hours), QueueConfig(name="anyone"))
    col = StateCollector(store, store, StateGauges(registry), queues, clock)

    async def open_now() -> dict[str, float | None]:
        await col.collect_once(1.0)
        return {q.name: registry.get_sample_value("acd_queue_open", {"queue": q.name}) for q in queues}

    assert await open_now() == {"sales": 0, "anyone": 1}
    clock.at += 3600
    assert await open_now() == {"sales": 1, "anyone": 1}
    await RedisScheduleStore(store.redis, "col").set_override("sales", ManualOverride("closed", T0 + 5400, "", T0))
    assert await open_now() == {"sales": 0, "anyone": 1}
    clock.at += 1800  # the override has run out
    assert await open_now() == {"sales": 1, "anyone": 1}
