"""Links that hang: Redis, the broker and AMI stop answering without closing anything (the
lab's BlackholeProxy in between). Each client notices within its stated time, and works
again on fresh connections once the link is back (docs/operations.md, "Links that hang")."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable

import pytest
from pydantic import SecretStr

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.embedded import EmbeddedKafka, EmbeddedRedis, free_port
from load_tests.proxy import BlackholeProxy
from router.ami.gateway import AmiGateway
from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, KafkaLink, Topics, ensure_topics
from router.clock import ScaledClock
from router.envelope import AMI_EVENT, Envelope, decode
from router.errors import BrokerUnavailableError
from router.settings import AmiSettings, KafkaSettings, RedisSettings
from router.store.connect import PING_EVERY_S, RedisLink, link_options, open_redis
from router.store.outbox import RedisOutboxStore
from tests.polling import eventually
from workers import relay

SLACK_S = 1.5  # a loaded machine's scheduling, on top of a stated time


@pytest.fixture(scope="module")
async def tcp_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedRedis]:
    async with EmbeddedRedis(tmp_path_factory.mktemp("redis-tcp")) as server:
        yield server


@pytest.fixture
async def redis_proxy(tcp_redis: EmbeddedRedis) -> AsyncIterator[BlackholeProxy]:
    async with BlackholeProxy("127.0.0.1", tcp_redis.port) as proxy:
        yield proxy


def envelope(n: int) -> Envelope:
    return Envelope(type=AMI_EVENT, id=f"t-{n}", source="test", ts=0.0, key=f"call:{n % 3}", data={"n": n})


async def timed[T](awaitable: Awaitable[T]) -> tuple[T, float]:
    """What ``awaitable`` gave, and how many seconds it took."""
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


# -- Redis ------------------------------------------------------------------------------------


async def test_redis_a_hung_link_fails_within_the_socket_timeout_and_recovers_on_a_fresh_connection(
    redis_proxy: BlackholeProxy,
) -> None:
    settings = RedisSettings(url=f"redis://127.0.0.1:{redis_proxy.port}/0", socket_timeout_s=0.5)
    client = await open_redis(settings)
    link = RedisLink(client, settings.url)
    try:
        assert await link.check()
        redis_proxy.hang()
        ready, took = await timed(link.check())
        assert ready is False and took < settings.socket_timeout_s + SLACK_S
        redis_proxy.release()
        assert await link.check()  # the timed-out connection was dropped: a fresh one answers
    finally:
        await client.aclose()


@pytest.mark.parametrize("probe_sees_the_return", [True, False], ids=["probed-again", "not-yet"])
async def test_redis_once_the_link_answers_again_no_caller_waits_on_a_connection_left_from_the_hang(
    redis_proxy: BlackholeProxy, probe_sees_the_return: bool
) -> None:
    """Connections idle in the pool while the link hung are dead for good (the black hole
    keeps them open); busy callers each used to take one and wait out the socket timeout,
    one after another: a routing worker fell ~13 s behind after a hang in `acd chaos`. The
    probe drops them when it finds the link hung, and again when it answers (for those made
    meanwhile), so callers are served at once even before the probe's next PING."""
    settings = RedisSettings(url=f"redis://127.0.0.1:{redis_proxy.port}/0", socket_timeout_s=0.5)
    client = await open_redis(settings)
    link = RedisLink(client, settings.url)
    try:
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.05) for _ in range(6)))  # six in the pool
        redis_proxy.hang()
        assert not await link.check()
        redis_proxy.release()
        if probe_sees_the_return:
            assert await link.check()
        answers, took = await timed(asyncio.gather(*(client.ping() for _ in range(6)), return_exceptions=True))
        assert answers == [True] * 6 and took < settings.socket_timeout_s, (answers, took)
    finally:
        await client.aclose()


async def test_redis_the_relays_blocking_read_fits_in_the_shortest_socket_timeout(
    redis_proxy: BlackholeProxy,
) -> None:
    """XREADGROUP BLOCK waits without an answer: the socket timeout must outlast it."""
    shortest = RedisSettings.model_fields["socket_timeout_s"].metadata[0].ge
    assert shortest / 2 > relay.BLOCK_MS / 1000
    settings = RedisSettings(url=f"redis://127.0.0.1:{redis_proxy.port}/0", socket_timeout_s=shortest)
    client = await open_redis(settings)
    try:
        outbox = RedisOutboxStore(client, f"block-{free_port()}")
        await outbox.ensure_group()
        for _ in range(3):
            assert await outbox.read("relay-1", 10, relay.BLOCK_MS) == []
    finally:
        await client.aclose()


def test_redis_link_options_tcp_keepalive_for_tcp_urls_only() -> None:
    tcp = link_options(RedisSettings(url="redis://redis.example:6379/0", tcp_keepalive_s=15))
    assert tcp["socket_keepalive"] is True
    assert tcp["socket_keepalive_options"][socket.TCP_KEEPIDLE] == 15
    assert tcp["socket_timeout"] == RedisSettings().socket_timeout_s
    assert link_options(RedisSettings(url="redis://r:6379/0", tcp_keepalive_s=0))["socket_keepalive"] is False
    assert "socket_keepalive" not in link_options(RedisSettings(url="unix:///run/redis.sock"))


def test_redis_detection_time_stated_in_the_defaults() -> None:
    assert PING_EVERY_S + RedisSettings().socket_timeout_s <= 3.0


# -- Kafka ------------------------------------------------------------------------------------


@pytest.fixture
async def proxied_kafka() -> AsyncIterator[tuple[EmbeddedKafka, BlackholeProxy]]:
    """A broker that tells its clients to come through the proxy (advertised listener)."""
    # The broker picks its own port (another, if a process takes the first before the broker
    # binds it; CI, 2026-11-30), so the proxy learns where to forward once the broker listens.
    async with (
        BlackholeProxy("127.0.0.1", 0) as proxy,
        EmbeddedKafka(advertised_port=proxy.port) as kafka,
    ):
        proxy.target_port = kafka.port
        yield kafka, proxy


class CountingClient:
    def __init__(self) -> None:
        self.dropped = 0

    def drop_connections(self) -> None:
        self.dropped += 1


async def test_kafka_link_notices_a_broker_that_accepts_but_never_answers(
    proxied_kafka: tuple[EmbeddedKafka, BlackholeProxy],
) -> None:
    kafka, proxy = proxied_kafka
    link = KafkaLink(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, probe_timeout_s=0.5))
    client = CountingClient()
    link.track(client)
    try:
        assert await link.check()
        proxy.hang()
        ready, took = await timed(link.check())
        assert ready is False and took < 0.5 + SLACK_S
        assert not await link.check()  # a connection made while hung is not answered either
        proxy.release()
        assert client.dropped == 0
        assert await link.check()
        assert client.dropped == 1  # answered again: the clients reconnect
        assert await link.check() and client.dropped == 1
    finally:
        link.close()


async def test_kafka_link_notices_the_return_without_waiting_for_an_attempt_stuck_in_the_hang(
    proxied_kafka: tuple[EmbeddedKafka, BlackholeProxy],
) -> None:
    """An attempt made while the link hung waits its whole timeout; the ones made after the
    release, beside it, are answered at once."""
    kafka, proxy = proxied_kafka
    # The timeout is long so that an answer at once and an answer after the timeout stay
    # apart on a starved machine.
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, probe_timeout_s=6.0)
    link = KafkaLink(settings, every_s=0.1)
    client = CountingClient()
    link.track(client)
    watch = asyncio.create_task(link.watch())
    try:
        proxy.hang()
        await eventually(lambda: not link.ready, within=settings.probe_timeout_s + SLACK_S)
        await asyncio.sleep(1.0)  # attempts are waiting in the black hole now
        proxy.release()
        _, took = await timed(eventually(lambda: link.ready, within=settings.probe_timeout_s))
        assert took < settings.probe_timeout_s / 3  # not an attempt's whole timeout
        assert client.dropped == 1
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


async def test_kafka_link_a_broker_that_refused_makes_no_client_drop_its_connections(
    proxied_kafka: tuple[EmbeddedKafka, BlackholeProxy],
) -> None:
    """Stopped, not hung: its connections were closed already, and a broker that restarted
    empty must get its topics back before clients write (ingest sees to that)."""
    kafka, proxy = proxied_kafka
    link = KafkaLink(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, probe_timeout_s=0.5))
    client = CountingClient()
    link.track(client)
    port = proxy.port
    try:
        assert await link.check()
        await proxy.stop()  # connections closed, new ones refused
        assert not await link.check()
        async with BlackholeProxy("127.0.0.1", kafka.port, port=port):
            assert await link.check()
        assert client.dropped == 0
    finally:
        link.close()


async def test_kafka_clients_work_again_at_once_not_after_their_request_timeout(
    proxied_kafka: tuple[EmbeddedKafka, BlackholeProxy], topic_prefix: str
) -> None:
    """A long request timeout, so that only the reconnect on the link's return can explain a
    prompt recovery: every connection open during the hang is dead for good."""
    kafka, proxy = proxied_kafka
    settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=topic_prefix,
        partitions=2,
        request_timeout_s=40,
        probe_timeout_s=0.5,
        session_timeout_ms=10_000,
    )
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings)
    reader = KafkaGroupReader(settings, [topic], f"{topic_prefix}-group")
    await producer.start()
    await reader.start()
    link = KafkaLink(settings)
    link.track(producer, reader)
    try:
        await producer.send_and_wait(topic, envelope(1))
        await eventually(lambda: _read(reader), within=20)
        proxy.hang()
        in_flight = asyncio.ensure_future(producer.send_and_wait(topic, envelope(2)))
        assert not await link.check()
        proxy.release()
        assert await link.check()
        _, took = await timed(asyncio.wait_for(in_flight, 10))
        assert took < 10  # not the 40 s request timeout
        await producer.send_and_wait(topic, envelope(3))
        seen: list[int] = []

        async def read_three() -> bool:
            seen.extend(await _read(reader))
            return {2, 3} <= set(seen)

        await eventually(read_three, within=20)
    finally:
        link.close()
        await reader.stop()
        await producer.stop()


async def _read(reader: KafkaGroupReader) -> list[int]:
    batch = await reader.read(timeout_ms=200)
    await reader.commit(batch)
    return [decode(message.value).data["n"] for message in batch]


async def test_kafka_abandon_returns_at_once_on_a_hung_broker_and_restart_makes_a_fresh_producer(
    proxied_kafka: tuple[EmbeddedKafka, BlackholeProxy], topic_prefix: str
) -> None:
    kafka, proxy = proxied_kafka
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, request_timeout_s=40, partitions=1)
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, envelope(1))
        proxy.hang()
        in_flight = await producer.send(topic, envelope(2))
        await asyncio.sleep(0.2)  # on the wire, into the black hole
        _, took = await timed(producer.abandon(BrokerUnavailableError("test: hung")))
        assert took < 5  # not the 40 s request timeout of what was in flight
        with pytest.raises(BrokerUnavailableError):
            await in_flight
        proxy.release()
        assert await producer.restart()
        await asyncio.wait_for(producer.send_and_wait(topic, envelope(3)), 15)
    finally:
        await producer.stop()


# -- AMI --------------------------------------------------------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[AmiSimulator]:
    pbx = Pbx(ScaledClock(time_scale=50.0), seed=1)
    user = AmiUser("right", frozenset({"system", "call"}), frozenset({"call"}))
    sim = AmiSimulator(pbx, users={"acd-router": user})
    await sim.start()
    yield sim
    await sim.stop()
    await pbx.aclose()


async def test_ami_a_hung_link_is_dropped_after_an_unanswered_ping_and_made_again(
    simulator: AmiSimulator,
) -> None:
    async with BlackholeProxy("127.0.0.1", simulator.port) as proxy:
        settings = AmiSettings(
            port=proxy.port,
            secret=SecretStr("right"),
            ping_interval_s=0.3,
            ping_timeout_s=0.3,
            connect_timeout_s=0.5,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        lost: list[float] = []
        gateway = AmiGateway(settings, events=False, on_lost=lambda: lost.append(time.monotonic()))
        run = asyncio.create_task(gateway.run())
        try:
            await eventually(lambda: gateway.ready)
            proxy.hang()
            hung_at = time.monotonic()
            await eventually(lambda: not gateway.ready)
            assert lost and lost[0] - hung_at < settings.ping_interval_s + settings.ping_timeout_s + SLACK_S
            await asyncio.sleep(1.0)  # attempts into the hung link meanwhile: given up, retried
            assert not gateway.ready
            proxy.release()
            await eventually(lambda: gateway.ready and gateway.connects >= 2)
            pong = await gateway.send_action({"Action": "Ping"})
            assert pong.get("Ping") == "Pong"
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await gateway.close()


def test_ami_detection_time_stated_in_the_defaults() -> None:
    ami = AmiSettings()
    assert ami.ping_interval_s + ami.ping_timeout_s <= 4.0

