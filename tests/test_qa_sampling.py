"""Quality sampling (docs/quality.md) through the real answer script on a real redis-server:
the share of calls drawn at random, each agent's daily minimum topped up, the same seed
drawing the same calls, and a sampled call of a recording queue asking for its recording."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig, QaPolicy, QueueConfig
from router.events import AgentAnswered, CallerHungUp
from router.qa import draw, recording_stem
from router.records import CallRecord, record_from_outbox
from router.store import NO_POSITION, NewCall, Position, RedisStateStore
from tests.support import EngineHarness

ZONE = "Europe/Berlin"
SEED = "qa-test-seed"
SHARE = 0.05
MINIMUM = 2
POLICY = QaPolicy(sample_share=SHARE, min_per_agent_per_day=MINIMUM, record=True)
AGENTS = [f"a{n:02d}" for n in range(40)]
FIRST_DAY = date(2026, 3, 27)  # five days, the spring clock change (the 29th) among them
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(5)]
SIGMAS = 4.0


@dataclass(frozen=True)
class Answer:
    call_id: str
    agent_id: str
    at: float
    day: str
    reason: str
    recording: str
    record_now: bool


def workload(total: int, seed: int = 12) -> dict[tuple[str, str], list[float]]:
    """Answer times per (agent, day): 40 agents over 5 days, ``total`` answers in all.

    Most agents answer dozens of calls a day; a few answer none, one, two or three on
    some days (part-timers), so that the daily minimum is tried at its edges."""
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    plan: dict[tuple[str, str], int] = {}
    for day in DAYS:
        for index, agent in enumerate(AGENTS):
            plan[(agent, day.isoformat())] = (index + day.day) % 4 if index < 6 else 0
    busy = [(a, d.isoformat()) for a in AGENTS[6:] for d in DAYS]
    left = total - sum(plan.values())
    for key in busy:
        plan[key] = left // len(busy)
    for key in rng.sample(busy, left % len(busy)):
        plan[key] += 1
    times: dict[tuple[str, str], list[float]] = {}
    for (agent, label), count in plan.items():
        start = datetime.combine(date.fromisoformat(label), datetime.min.time(), zone).timestamp()
        # Working hours 07:00-21:00 local, calls in order.
        times[(agent, label)] = sorted(start + rng.uniform(7 * 3600, 21 * 3600) for _ in range(count))
    return times


async def run_agent(
    store: RedisStateStore, agent: str, calls: list[tuple[str, float]], seed: str
) -> list[Answer]:
    answers = []
    for call_id, at in calls:
        call = NewCall(
            call_id, "q", 0, False, None, f"PJSIP/trunk-{call_id}", at, None, None, 20.0, 0.0, qa=POLICY
        )
        assert (await store.enqueue(call, NO_POSITION)).status == "queued"
        reserved = await store.reserve(call_id, agent, f"o-{call_id}", at, at + 10, json.dumps({}))
        assert reserved.status == "ok", reserved
        answered = await store.agent_answered(call_id, agent, at + 5, NO_POSITION, qa_seed=seed)
        assert answered.status == "answered"
        label = store.days.day(at + 5).label
        answers.append(
            Answer(call_id, agent, at + 5, label, answered.qa_reason, answered.recording, answered.record_now)
        )
        assert (await store.caller_hung_up(call_id, at + 35, NO_POSITION)).status == "completed"
    return answers


async def answer_all(
    redis: Redis, site: str, times: dict[tuple[str, str], list[float]], seed: str
) -> list[Answer]:
    store = RedisStateStore(redis, site, timezone=ZONE)
    for agent in AGENTS:
        await store.upsert_agent(AgentConfig(id=agent), 0.0)
        await store.agent_presence(agent, "available", "", 0.0, NO_POSITION)
    per_agent: dict[str, list[tuple[str, float]]] = defaultdict(list)
    serial = 0
    for (agent, _label), moments in sorted(times.items()):
        for at in moments:
            serial += 1
            per_agent[agent].append((f"{int(at)}.{serial}", at))
    for agent in per_agent:
        per_agent[agent].sort(key=lambda item: item[1])
    # The agents side by side: their scripts share round trips, as a routing worker's do.
    found = await asyncio.gather(*(run_agent(store, a, calls, seed) for a, calls in per_agent.items()))
    await redis.delete(store.keys.outbox)  # 20,000 answers' records: not needed here
    return [answer for answers in found for answer in answers]


@pytest.fixture(scope="module")
def plan() -> dict[tuple[str, str], list[float]]:
    return workload(20_000)


@pytest.mark.slow
async def test_twenty_thousand_answers_meet_the_share_and_every_agents_daily_minimum(
    redis: Redis, plan: dict[tuple[str, str], list[float]]
) -> None:
    answers = await answer_all(redis, "qa1", plan, SEED)
    assert len(answers) == 20_000

    # The share: calls drawn at random are a binomial sample of the answers.
    drawn = [a for a in answers if a.reason == "random"]
    n = len(answers)
    sigma = math.sqrt(SHARE * (1 - SHARE) / n)
    assert abs(len(drawn) / n - SHARE) <= SIGMAS * sigma, (len(drawn) / n, sigma)
    # ... exactly the calls whose draw (router.qa.draw, the script's function) is below it,
    assert {a.call_id for a in drawn} == {a.call_id for a in answers if draw(SEED, a.call_id) < SHARE}
    # ... and as likely for every day and for the busy agents alike (no agent or time bias).
    for label in {a.day for a in answers}:
        of_day = [a for a in answers if a.day == label]
        share = sum(a.reason == "random" for a in of_day) / len(of_day)
        assert abs(share - SHARE) <= SIGMAS * math.sqrt(SHARE * (1 - SHARE) / len(of_day)), label
    busy = [a for a in answers if a.agent_id in AGENTS[6:]]
    per_agent = Counter(a.agent_id for a in busy if a.reason == "random")
    expected = len(busy) / len(AGENTS[6:]) * SHARE  # about 24 per agent over the five days
    chi2 = sum((per_agent[a] - expected) ** 2 / expected for a in AGENTS[6:])
    assert chi2 < 70.0  # chi-square, 33 degrees of freedom: p < 0.001 beyond 63.9

    # The minimum: every agent that answered at least MINIMUM calls on a day has at least
    # MINIMUM samples that day; one that answered fewer has all of them sampled.
    by_agent_day: dict[tuple[str, str], list[Answer]] = defaultdict(list)
    for a in answers:
        by_agent_day[(a.agent_id, a.day)].append(a)
    for (agent, label), day_answers in by_agent_day.items():
        sampled = [a for a in day_answers if a.reason]
        assert len(sampled) >= min(MINIMUM, len(day_answers)), (agent, label)
        # Topped up exactly while the agent had fewer samples that day than the minimum (the
        # draws count towards it), and never after: an answer is only ever the last of its
        # day in hindsight, so no other rule keeps the promise (docs/quality.md).
        before = 0
        for a in sorted(day_answers, key=lambda a: a.at):
            assert (a.reason == "minimum") == (before < MINIMUM and a.reason != "random"), (agent, label)
            before += bool(a.reason)
    # The part-timers' days tried the edges: 0 to 3 answers.
    assert {len(v) for (agent, _), v in by_agent_day.items() if agent in AGENTS[:6]} == {1, 2, 3}

    # Sampled calls of a recording queue are recorded, to a file named after the call.
    for a in answers:
        if a.reason:
            assert a.recording == recording_stem(a.call_id) + ".wav" and a.record_now
        else:
            assert a.recording == "" and not a.record_now

    # The per-day counts the script keeps agree.
    counts = await redis.hgetall(RedisStateStore(redis, "qa1").keys.qa_day(DAYS[2].isoformat()))
    on_day = [a for a in answers if a.day == DAYS[2].isoformat()]
    assert sum(int(v) for k, v in counts.items() if k.startswith("answered:")) == len(on_day)
    assert sum(int(v) for k, v in counts.items() if k.startswith("sampled:")) == sum(
        bool(a.reason) for a in on_day
    )


async def test_the_same_seed_draws_the_same_calls_and_another_seed_others(
    redis: Redis, plan: dict[tuple[str, str], list[float]]
) -> None:
    small = {key: moments[:3] for key, moments in plan.items()}
    first = await answer_all(redis, "qa2", small, SEED)
    again = await answer_all(redis, "qa3", small, SEED)
    other = await answer_all(redis, "qa4", small, "another-seed")
    assert [(a.call_id, a.reason) for a in first] == [(a.call_id, a.reason) for a in again]
    drawn = {a.call_id for a in first if a.reason == "random"}
    assert drawn and drawn != {a.call_id for a in other if a.reason == "random"}


async def test_a_queue_without_qa_samples_nothing_and_counts_no_agent_day(redis: Redis) -> None:
    store = RedisStateStore(redis, "qa5", timezone=ZONE)
    await store.upsert_agent(AgentConfig(id="a1"), 0.0)
    await store.agent_presence("a1", "available", "", 0.0, NO_POSITION)
    at = datetime(2026, 3, 27, 10, tzinfo=ZoneInfo(ZONE)).timestamp()
    call = NewCall("c1", "q", 0, False, None, "PJSIP/t-c1", at, None, None, 20.0, 0.0)
    await store.enqueue(call, NO_POSITION)
    await store.reserve("c1", "a1", "o1", at, at + 10, "{}")
    answered = await store.agent_answered("c1", "a1", at + 2, NO_POSITION, qa_seed=SEED)
    assert (answered.status, answered.qa_reason, answered.recording) == ("answered", "", "")
    assert await redis.exists(store.keys.qa_day("2026-03-27")) == 0


async def test_a_redelivered_answer_is_not_sampled_twice(redis: Redis) -> None:
    store = RedisStateStore(redis, "qa6", timezone=ZONE)
    await store.upsert_agent(AgentConfig(id="a1"), 0.0)
    await store.agent_presence("a1", "available", "", 0.0, NO_POSITION)
    at = datetime(2026, 3, 27, 10, tzinfo=ZoneInfo(ZONE)).timestamp()
    policy = QaPolicy(min_per_agent_per_day=5, record=True)
    call = NewCall("c1", "q", 0, False, None, "PJSIP/t-c1", at, None, None, 20.0, 0.0, qa=policy)
    await store.enqueue(call, NO_POSITION)
    await store.reserve("c1", "a1", "o1", at, at + 10, "{}")
    pos = Position("ev:0", 9)
    first = await store.agent_answered("c1", "a1", at + 2, pos, qa_seed=SEED)
    again = await store.agent_answered("c1", "a1", at + 2, pos, qa_seed=SEED)
    assert (first.qa_reason, first.record_now, again.status) == ("minimum", True, "duplicate")
    counts = await redis.hgetall(store.keys.qa_day("2026-03-27"))
    assert counts == {"answered:a1": "1", "sampled:a1": "1"}


def test_recording_names_are_safe_file_names() -> None:
    assert recording_stem("1767225600.17") == "acd-1767225600.17"
    assert recording_stem("../etc/passwd,b") == "acd-.._etc_passwd_b"
    assert recording_stem("x" * 500) == "acd-" + "x" * 200
    assert recording_stem("a b\r\nc") == "acd-a_b__c"


def test_the_draw_is_uniform_and_depends_on_the_seed() -> None:
    values = [draw("s", f"1767225600.{n}") for n in range(10_000)]
    assert all(0 <= v < 1 for v in values)
    assert abs(sum(values) / len(values) - 0.5) < 0.01
    assert draw("s", "c1") == draw("s", "c1") != draw("t", "c1")


# -- through the engine: the record command and the call's record --------------------------------


async def test_a_sampled_call_of_a_recording_queue_is_recorded_and_its_record_says_so(redis: Redis) -> None:
    queue = QueueConfig(name="support", qa=QaPolicy(sample_share=1.0, record=True))
    h = await EngineHarness(redis, [queue], [AgentConfig(id="a1")]).start()
    await h.presence("a1")
    await h.arrive("1767225600.17", "support")
    assert h.sink.last() == ("1767225600.17", "a1")
    answered = AgentAnswered("1767225600.17", "PJSIP/a1", h.clock.now() + 3)
    await h.engine.handle(answered, Position("ev:0", 3), 0)
    await h.engine.handle(answered, Position("ev:0", 3), 0)  # Kafka redelivers it
    [record] = h.sink.records
    assert (record.call_id, record.channel, record.file, record.agent_id, record.queue) == (
        "1767225600.17",
        "PJSIP/trunk-1767225600.17",
        "acd-1767225600.17.wav",
        "a1",
        "support",
    )
    assert h.metrics.qa_sampled.labels(queue="support", type="random")._value.get() == 1
    await h.engine.handle(CallerHungUp("1767225600.17", "16", h.clock.now() + 60), NO_POSITION, 0)
    entries = await redis.xrange(h.store.keys.outbox)
    [call] = [r for e, f in entries if isinstance(r := record_from_outbox("e", e, f), CallRecord)]
    assert (call.qa_sampled, call.qa_reason, call.recording) == (True, "random", "acd-1767225600.17.wav")


async def test_a_sampled_call_of_a_queue_that_does_not_record_is_only_marked(redis: Redis) -> None:
    queue = QueueConfig(name="support", qa=QaPolicy(sample_share=1.0))
    h = await EngineHarness(redis, [queue], [AgentConfig(id="a1")]).start()
    await h.presence("a1")
    await h.arrive("c1", "support")
    await h.engine.handle(AgentAnswered("c1", "PJSIP/a1", h.clock.now() + 3), NO_POSITION, 0)
    assert h.sink.records == []
    call = await h.store.call("c1")
    assert (call["qa_sampled"], call["qa_reason"], call["recording"]) == ("1", "random", "")
