"""Each call's and agent's events are applied in the order ingest sent them, even when a
broker that restarted empty delivers later ones before the resent earlier ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.bus import KafkaEnvelopeProducer, Topics
from router.envelope import AMI_EVENT, Envelope, KeyChain, decode
from router.errors import MalformedEventError
from router.metrics import IngestMetrics
from router.sequencing import KeySequencer, Link
from router.settings import AcdSettings, KafkaSettings
from router.store import RedisChainStore
from tests.polling import eventually
from workers.ingest import IngestWorker

from .test_api_support import Pipeline, pipeline

SESSION = 1_800_000_000_000


def envelope(seq: int, prev: int | None, key: str = "call:c1", session: int = SESSION) -> Envelope:
    return Envelope(
        type=AMI_EVENT,
        id=f"{session}-{seq}",
        source="test",
        ts=1.0,
        key=key,
        session=session,
        seq=seq,
        prev=prev,
    )


class MemoryChains:
    def __init__(self) -> None:
        self.links: dict[str, Link] = {}

    async def positions(self, keys: Iterable[str]) -> dict[str, Link]:
        return {key: self.links[key] for key in keys if key in self.links}

    async def advance(self, links: dict[str, Link]) -> None:
        for key, link in links.items():
            self.links[key] = max(link, self.links.get(key, link))


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def apply_all(sequencer: KeySequencer[str], arriving: list[Envelope]) -> list[int]:
    """What a worker does: admit, apply, then apply what was waiting for it. Applied seqs
    (-1 for an envelope without one)."""
    applied: list[int] = []
    for env in arriving:
        if not await sequencer.admit(env, env.id):
            continue
        item: tuple[Envelope, str] | None = (env, env.id)
        while item is not None:
            applied.append(item[0].seq if item[0].seq is not None else -1)
            item = sequencer.applied(item[0])
    return applied


async def test_a_later_envelope_waits_for_the_resent_earlier_one() -> None:
    sequencer: KeySequencer[str] = KeySequencer(MemoryChains())
    # 1 and 2 arrive; the broker loses 3 and 4; 5 arrives first; ingest resends 3, 4, 5.
    arriving = [
        envelope(1, None),
        envelope(2, 1),
        envelope(5, 4),
        envelope(3, 2),
        envelope(4, 3),
        envelope(5, 4),
    ]
    applied = await apply_all(sequencer, arriving)
    # 5 is applied right after 4 (held back, then released); its resent copy is a redelivery
    # the store's watermarks ignore.
    assert applied == [1, 2, 3, 4, 5, 5]
    assert sequencer.parked == 0


async def test_keys_do_not_wait_for_each_other() -> None:
    sequencer: KeySequencer[str] = KeySequencer(MemoryChains())
    arriving = [envelope(1, None, "call:a"), envelope(2, None, "call:b"), envelope(4, 3, "call:a")]
    arriving += [envelope(5, 2, "call:b")]
    assert await apply_all(sequencer, arriving) == [1, 2, 5]
    assert sequencer.parked == 1


async def test_envelopes_without_a_chain_and_other_sessions_are_applied() -> None:
    sequencer: KeySequencer[str] = KeySequencer(MemoryChains())
    unchained = Envelope(type=AMI_EVENT, id="x", source="test", ts=1.0, key="call:c1")
    arriving = [envelope(1, None), unchained, envelope(9, 8, session=SESSION + 1), envelope(7, 6)]
    # A newer ingest session restarts the chain; an older session's envelope is a late
    # redelivery (applied, and ignored by the store's watermarks).
    assert await apply_all(sequencer, arriving) == [1, -1, 9, 7]


async def test_a_predecessor_that_never_comes_is_given_up_on_after_the_wait() -> None:
    clock = FakeTime()
    sequencer: KeySequencer[str] = KeySequencer(MemoryChains(), wait_s=15.0, now=clock)
    assert await apply_all(sequencer, [envelope(1, None), envelope(3, 2), envelope(4, 3)]) == [1]
    clock.t = 14.0
    assert sequencer.overdue() == []
    clock.t = 15.5
    due = sequencer.overdue()
    assert [env.seq for env, _ in due] == [3]
    assert sequencer.applied(due[0][0]) is not None  # 4 follows 3
    assert sequencer.parked == 0


async def test_a_new_owner_reads_where_the_chain_stands() -> None:
    chains = MemoryChains()
    first: KeySequencer[str] = KeySequencer(chains)
    assert await apply_all(first, [envelope(1, None), envelope(2, 1)]) == [1, 2]
    await first.save()
    assert chains.links == {"call:c1": (SESSION, 2)}
    # After a rebalance, another worker holds back 4 (3 is missing) without having seen 1-2.
    second: KeySequencer[str] = KeySequencer(chains)
    assert await apply_all(second, [envelope(4, 3), envelope(3, 2)]) == [3, 4]
    # A rebalance drops what was cached and held back.
    assert await apply_all(second, [envelope(6, 5)]) == []
    assert second.forget() == 1


async def test_the_chain_store_in_redis_only_moves_forward(redis: Redis, redis_server: EmbeddedRedis) -> None:
    store = RedisChainStore(redis, "order", ttl_s=60)
    await store.advance({"call:c1": (SESSION, 5), "agent:PJSIP/a1": (SESSION, 7)})
    await store.advance({"call:c1": (SESSION, 3)})  # a slow worker's late write
    await store.advance({"agent:PJSIP/a1": (SESSION + 1, 1)})  # ingest restarted
    assert await store.positions(["call:c1", "agent:PJSIP/a1", "call:never"]) == {
        "call:c1": (SESSION, 5),
        "agent:PJSIP/a1": (SESSION + 1, 1),
    }
    assert 0 < await redis.pttl("acd:{order}:chain:call:c1") <= 60_000


def test_prev_travels_in_the_envelope_and_is_validated() -> None:
    assert decode(envelope(5, 4).encode()).prev == 4
    assert decode(envelope(1, None).encode()).prev is None
    body = json.loads(envelope(5, 4).encode())
    for bad in (5, 9, -1, "4", True):
        with pytest.raises(MalformedEventError, match="prev"):
            decode(json.dumps(body | {"prev": bad}).encode())
    with pytest.raises(MalformedEventError, match="prev"):
        decode(json.dumps({k: v for k, v in body.items() if k not in ("session", "seq")}).encode())


def test_ingest_chains_the_envelopes_of_each_call_and_agent() -> None:
    worker = IngestWorker(AcdSettings(), None, None, IngestMetrics(CollectorRegistry()), None)  # type: ignore[arg-type]
    call = {"Event": "Newstate", "Uniqueid": "1.1", "Linkedid": "1.1"}
    device = {"Event": "DeviceStateChange", "Device": "PJSIP/a1", "State": "INUSE"}
    sent = [worker._envelope(fields, 1.0) for fields in (call, device, call, device, call)]
    assert [(e.seq, e.prev) for e in sent] == [(1, None), (2, None), (3, 1), (4, 2), (5, 3)]


# -- over real connections: an `acd route` process, Tansu and redis-server -------------------

QUEUE = {"name": "support", "service_level": {"threshold_s": 30, "target": 0.8}}
AGENT = {"id": "a1", "skills": {"support": 2}}
CALLER = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": "1800000000.1", "Linkedid": "1800000000.1"}
DIAL = CALLER | {"DestChannel": "PJSIP/a1-00000002", "DestUniqueid": "1800000000.2"}


@pytest.fixture
async def route(
    redis: Redis, redis_server: EmbeddedRedis, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    async with pipeline(
        tmp_path, redis_server.url, kafka_bootstrap, topic_prefix, queues=[QUEUE], agents=[AGENT]
    ) as harness:
        await harness.start("route")
        yield harness


async def until_state(pipe: Pipeline, call_id: str, wanted: set[str], within: float = 20.0) -> str:
    async def state() -> str:
        found = (await pipe.store.call(call_id)).get("state", "")
        return found if found in wanted else ""

    return await eventually(state, f"call {call_id} in {sorted(wanted)}", within=within)


@pytest.mark.slow
async def test_a_hangup_that_overtakes_the_answer_does_not_make_the_call_abandoned(
    route: Pipeline, kafka_bootstrap: str, topic_prefix: str
) -> None:
    producer = KafkaEnvelopeProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await producer.start()
    topic = Topics(topic_prefix).ami_events
    at = route.clock.now()

    def ami(seq: int, prev: int | None, fields: dict[str, object], key: str) -> Envelope:
        return Envelope(
            type=AMI_EVENT,
            id=f"{SESSION}-{seq}",
            source="test",
            ts=at + seq,
            key=key,
            data=fields,
            session=SESSION,
            seq=seq,
            prev=prev,
        )

    call_key, agent_key = "call:1800000000.1", "agent:PJSIP/a1"
    member = {"Event": "QueueMemberAdded", "Queue": "acd-agents", "Interface": "PJSIP/a1", "Paused": "0"}
    queued = CALLER | {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Queue": "support"}
    try:
        for env in (ami(1, None, member, agent_key), ami(2, None, queued, call_key)):
            await producer.send_and_wait(topic, env)
        await until_state(route, "1800000000.1", {"offered", "dispatching"})
        await producer.send_and_wait(topic, ami(3, 2, DIAL | {"Event": "DialBegin"}, call_key))
        await until_state(route, "1800000000.1", {"ringing"})
        # The broker lost the answer (4); the hangup (5) arrives first, then ingest resends both.
        answer = ami(4, 3, DIAL | {"Event": "DialEnd", "DialStatus": "ANSWER"}, call_key)
        hangup = ami(5, 4, CALLER | {"Event": "Hangup", "Cause": "16"}, call_key)
        for env in (hangup, answer, hangup):
            await producer.send_and_wait(topic, env)
        assert await until_state(route, "1800000000.1", {"completed", "abandoned"}) == "completed"
    finally:
        await producer.stop()
    assert "arrived before its predecessor" in route.log("route")


async def test_what_is_held_back_is_listed_until_it_is_applied() -> None:
    sequencer: KeySequencer[str] = KeySequencer(MemoryChains())
    assert await apply_all(sequencer, [envelope(1, None), envelope(3, 2)]) == [1]
    assert sequencer.held() == [f"{SESSION}-3"]
    assert await apply_all(sequencer, [envelope(2, 1)]) == [2, 3]
    assert sequencer.held() == []


async def test_a_cache_behind_another_workers_progress_is_refreshed_before_holding_back() -> None:
    chains = MemoryChains()
    chains.links["call:c1"] = (SESSION, 9)  # another worker applied up to 9
    sequencer: KeySequencer[str] = KeySequencer(chains)
    # A resent first envelope (no prev) fills this worker's cache with 1; 5 is not missing.
    assert await apply_all(sequencer, [envelope(1, None), envelope(5, 4)]) == [1, 5]
    assert sequencer.parked == 0


async def test_a_key_never_seen_waits_for_the_predecessor_it_names() -> None:
    sequencer: KeySequencer[str] = KeySequencer(MemoryChains())
    # The broker lost a new call's first envelope (1); its hangup (2) arrives, then 1 again.
    assert await apply_all(sequencer, [envelope(2, 1), envelope(1, None)]) == [1, 2]


def test_a_key_chain_forgets_the_least_recently_used_key_first() -> None:
    chain = KeyChain(max_keys=2)
    assert [chain.link("a", 1), chain.link("b", 2), chain.link("a", 3), chain.link("c", 4)] == [None] * 2 + [
        1,
        None,
    ]
    assert (chain.link("b", 5), chain.link("c", 6)) == (None, 4)  # b went first: used least recently
