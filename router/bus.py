"""Kafka adapters: topic names, a producer and a consumer-group reader for envelopes.

Works with any Kafka-protocol broker (Apache Kafka in production, Tansu in tests and the
demo). Producers use ``acks=all``; consumers never auto-commit: the routing worker commits
an offset only after the event it covers has been applied and its commands produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.conn import CloseReason
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    IllegalStateError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from router.catchup import Marks, lagging
from router.envelope import Envelope
from router.errors import AcdError, BrokerRefusedError, BrokerUnavailableError
from router.immutable import immutable
from router.settings import KafkaSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    """``acd.<entity>.<kind>.v1`` topic names under a configurable prefix."""

    prefix: str = "acd"

    @property
    def ami_events(self) -> str:
        return f"{self.prefix}.ami.events.v1"

    @property
    def routing_commands(self) -> str:
        return f"{self.prefix}.routing.commands.v1"

    @property
    def routing_outcomes(self) -> str:
        return f"{self.prefix}.routing.outcomes.v1"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.deadletter.events.v1"

    @property
    def call_records(self) -> str:
        return f"{self.prefix}.records.calls.v1"

    @property
    def agent_records(self) -> str:
        return f"{self.prefix}.records.agents.v1"

    def all(self) -> tuple[str, ...]:
        return (
            self.ami_events,
            self.routing_commands,
            self.routing_outcomes,
            self.dead_letters,
            self.call_records,
            self.agent_records,
        )


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection options shared by producers, consumers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": int(settings.request_timeout_s * 1000),
        # Re-read topic metadata often: after a broker loses its topics (Tansu keeps them in
        # memory), clients must notice the recreated partitions within seconds, not minutes.
        "metadata_max_age_ms": settings.metadata_max_age_ms,
        "connections_max_idle_ms": int(settings.connections_max_idle_s * 1000),
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.ssl_cafile) if settings.ssl_cafile else None
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def unreachable(settings: KafkaSettings, exc: BaseException) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"cannot reach Kafka at {settings.bootstrap_servers} ({str(exc) or type(exc).__name__}): "
        "check that the broker is running and that ACD_KAFKA__BOOTSTRAP_SERVERS "
        "(kafka.bootstrap_servers) names it"
    )


# What no retry can cure: credentials, ACLs, client settings. aiokafka's own ``retriable``
# is not used: it calls a send's metadata timeout (a broker restarting) not retriable.
REFUSALS: tuple[type[KafkaError], ...] = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    IllegalSaslStateError,
    UnsupportedSaslMechanismError,
    ClusterAuthorizationFailedError,
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConfigurationError,
)


def broker_error(exc: BaseException) -> AcdError:
    """The project's error for a Kafka client failure (the caller raises it ``from exc``):
    refused credentials or ACLs are not retriable; anything else the broker may cure."""
    if isinstance(exc, AcdError):
        return exc
    if isinstance(exc, REFUSALS):
        return BrokerRefusedError(
            f"Kafka refused this client ({type(exc).__name__}: {exc}): check the kafka.sasl_* "
            "settings (ACD_KAFKA__SASL_USERNAME, ACD_KAFKA__SASL_PASSWORD) and the broker's ACLs"
        )
    return BrokerUnavailableError(f"Kafka unavailable ({type(exc).__name__}: {exc})")


def _translated_future(future: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """A delivery future that fails with ``broker_error`` instead of aiokafka's error."""
    mapped: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def copy(done: asyncio.Future[Any]) -> None:
        if mapped.done():
            return
        if done.cancelled():
            mapped.cancel()
        elif (exc := done.exception()) is not None:
            error = broker_error(exc)
            if error is not exc:
                error.__cause__ = exc
            mapped.set_exception(error)
        else:
            mapped.set_result(done.result())

    future.add_done_callback(copy)
    return mapped


async def _start_with_retry(client: Any, settings: KafkaSettings) -> None:
    """Start an aiokafka client, retrying while the broker is not up yet (``startup_timeout_s``)."""
    deadline = time.monotonic() + settings.startup_timeout_s
    delay = 0.1
    while True:
        try:
            await client.start()
            return
        except KafkaConnectionError as exc:
            await _close_quietly(client)
            if time.monotonic() + delay > deadline:
                raise unreachable(settings, exc) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        except KafkaError as exc:
            await _close_quietly(client)
            raise broker_error(exc) from exc


async def _close_quietly(client: Any) -> None:
    try:
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
    except Exception:  # closing a half-started client can fail in many ways; nothing to do
        logger.debug("ignoring error while closing a Kafka client", exc_info=True)


async def ensure_topics(settings: KafkaSettings, topics: Sequence[str]) -> list[str]:
    """Create missing ``topics`` with the configured partitions (and give too-small ones the
    configured count); returns the topics that had to be created or grown."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await _start_with_retry(admin, settings)
    try:
        return await _repair_topics(admin, settings, topics)
    except KafkaError as exc:
        raise broker_error(exc) from exc
    finally:
        await admin.close()


async def _repair_topics(
    admin: AIOKafkaAdminClient, settings: KafkaSettings, topics: Sequence[str]
) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [t for t in topics if t not in existing]
    if missing:
        new = [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
            await admin.create_topics(new)
    present = [t for t in topics if t in existing]
    short = [
        d["topic"] for d in await admin.describe_topics(present) if len(d["partitions"]) < settings.partitions
    ]
    return missing + await _grow(admin, settings, short)


async def _grow(admin: AIOKafkaAdminClient, settings: KafkaSettings, short: list[str]) -> list[str]:
    """A topic a client auto-created (after a broker lost its topics) has the broker's default
    partition count: grow it where the broker can; where it cannot (Tansu), work with it:
    keys still map to one partition each, only the parallelism is smaller."""
    if not short:
        return []
    try:
        await admin.create_partitions({t: NewPartitions(settings.partitions) for t in short})
    except KafkaError as exc:
        if short != _warned_short.get("topics"):
            _warned_short["topics"] = short
            logger.warning(
                "topics %s have fewer than %d partitions and cannot grow here (%s)",
                short,
                settings.partitions,
                exc,
            )
        return []
    return short


_warned_short: dict[str, list[str]] = {}


class TopicGuardian:
    """Checks every few seconds that the topics exist with their partitions, and repairs them.

    A broker that restarts empty (Tansu's memory storage; a Kafka cluster rebuilt from
    scratch) loses topics, offsets and every event not yet consumed. ``on_repaired`` lets the
    process react (ingest resynchronises from AMI: what was lost is re-listed).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        on_repaired: Callable[[list[str]], None] | None = None,
        interval_s: float = 2.0,
        sentinel: str | None = None,
    ) -> None:
        self.settings = settings
        # A sentinel topic only this process creates: another process may recreate the shared
        # topics first, but the sentinel's absence still tells this one the broker lost them.
        self.topics = list(topics) + ([sentinel] if sentinel else [])
        self.on_repaired = on_repaired
        self.interval_s = interval_s
        self._baseline = True  # the first check creates what is missing without reporting a loss

    async def run(self) -> None:
        """Until cancelled; broker outages are waited out, not raised."""
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        started = False
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                started = started or await self._start(admin)
                if started:
                    await self._check(admin)
        finally:
            if started:
                await _close_quietly(admin)

    async def _start(self, admin: AIOKafkaAdminClient) -> bool:
        try:
            await admin.start()
        except KafkaError:
            return False
        return True

    async def _check(self, admin: AIOKafkaAdminClient) -> None:
        try:
            repaired = await _repair_topics(admin, self.settings, self.topics)
        except KafkaError as exc:
            logger.debug("topic check skipped: %s", exc)
            return
        first, self._baseline = self._baseline, False
        if repaired and not first:
            logger.warning("Kafka topics missing or short, recreated: %s", repaired)
            if self.on_repaired is not None:
                self.on_repaired(repaired)


def bootstrap_addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    """``host:port,[v6]:port,host`` as (host, port) pairs; Kafka's port 9092 where none is given."""
    addresses = []
    for server in filter(None, (s.strip() for s in bootstrap_servers.split(","))):
        host, colon, port = server.rpartition(":")
        if colon and port.isdigit() and (host.startswith("[") or ":" not in host):
            addresses.append((host.strip("[]"), int(port)))
        else:
            addresses.append((server.strip("[]"), 9092))
    return addresses


class KafkaClient(Protocol):
    """What ``KafkaLink.track`` needs of a client."""

    def drop_connections(self) -> None: ...


def _drop_connections(client: Any) -> None:
    """Close every connection an aiokafka client holds, as a broker that went away would:
    requests in flight fail at once (aiokafka retries them on fresh connections) instead of
    each waiting ``request_timeout_s`` for an answer that will never come. aiokafka has no
    public way to do this; it does the same to a connection whose request timed out."""
    for connection in list(client._conns.values()):
        connection.close(reason=CloseReason.CONNECTION_BROKEN)


def _set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """From the next fetch request on, let the broker hold an empty fetch ``wait_ms``.
    aiokafka reads its ``fetch_max_wait_ms`` afresh for every request it builds, but has no
    public way to change it; before ``start()`` there is no fetcher yet and nothing to do."""
    fetcher = consumer._fetcher
    if fetcher is not None:
        fetcher._fetch_max_wait_ms = wait_ms


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, finished even when aiokafka's fetcher trips over its own
    cancellation: ``Fetcher.close`` awaits the fetch tasks it cancels without catching their
    CancelledError (aio-libs/aiokafka#647, still so in 0.14), so a consumer stopped while a
    fetch backs off from an error raised CancelledError out of ``stop()`` and left its
    connections open. Unless this task itself is being cancelled, close the client too."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.debug("aiokafka's consumer stop was cut short by a cancelled fetch; closing its client")
        await consumer._client.close()


API_VERSIONS = 18  # the Kafka request every broker answers, before any authentication
RECHECK_DOWN_S = 0.25  # how often a KafkaLink asks while the broker does not answer
PROBE_ERRORS = (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError)
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
PROBE_CLIENT_ID = b"acd-link-probe"
MAX_PROBE_REPLY = 1 << 20


def _api_versions_request(correlation_id: int) -> bytes:
    """ApiVersions v0: request header v1 (api key, version, correlation id, client id), no body."""
    body = struct.pack(">hhih", API_VERSIONS, 0, correlation_id, len(PROBE_CLIENT_ID)) + PROBE_CLIENT_ID
    return struct.pack(">i", len(body)) + body


class KafkaLink:
    """Whether the broker answers now: a process's readiness probe, and ingest's fence.

    An ApiVersions request (what every Kafka-protocol broker answers, before authentication)
    on a connection of its own, answered within ``probe_timeout_s``. A TCP connection alone
    proves nothing: a broker that hangs, or a network that drops everything, still lets the
    kernel accept it. After a failure the connection is dropped and the next check opens a
    fresh one, so the link counts as back only when a new connection is answered.
    """

    def __init__(self, settings: KafkaSettings, *, every_s: float | None = None) -> None:
        self.settings = settings
        self.every_s = every_s or settings.probe_interval_s
        self.timeout_s = settings.probe_timeout_s
        self.ready = True  # the process's clients have just been answered
        self._stream: Stream | None = None
        self._correlation = 0
        self._clients: list[KafkaClient] = []
        self._hung = False  # a probe went unanswered (not refused) since the link was last up

    def track(self, *clients: KafkaClient) -> None:
        """When the broker answers again after it left a probe unanswered, these clients drop
        every connection they hold (``drop_connections``) and make fresh ones.

        A connection that was open while the broker did not answer may never be answered
        again (the broker lost it: a frozen host replaced behind the same address, a
        failover, a firewall that forgot the flow); aiokafka's only cure would be each
        request's timeout, one connection after another. A broker that refused or closed
        connections (stopped, restarted) closed theirs already: then nothing is dropped,
        and the clients reconnect at their own pace, as they always did (a broker that
        restarted empty must have its topics recreated before they write: ingest, docs/
        architecture.md invariant 4).
        """
        self._clients.extend(clients)

    async def watch(self) -> None:
        """Until cancelled; an outage is logged once when it starts and once when it ends."""
        try:
            while True:
                await asyncio.sleep(self.every_s)
                if not await self.check():
                    await self._until_answered()
        finally:
            self.close()

    async def check(self) -> bool:
        """Ask once (on the link's connection, or a new one); whether the broker answered."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._stream is None:
                    self._stream = await self._open()
                await self._ask(self._stream)
        except PROBE_ERRORS as exc:
            self.close()
            self._failed(exc)
        else:
            self._answered()
        return self.ready

    async def _until_answered(self) -> None:
        """While the broker does not answer: a fresh attempt every RECHECK_DOWN_S, beside those
        still waiting (each gives up after ``probe_timeout_s``), so that an attempt stuck on a
        connection into a link that still hangs does not hold up noticing its return."""
        loop = asyncio.get_running_loop()
        attempts: set[asyncio.Task[None]] = set()
        try:
            while not self.ready:
                attempts.add(loop.create_task(self._attempt()))
                next_at = loop.time() + RECHECK_DOWN_S
                while attempts and not self.ready and next_at > loop.time():
                    _, attempts = await asyncio.wait(
                        attempts, timeout=next_at - loop.time(), return_when=asyncio.FIRST_COMPLETED
                    )
                if not self.ready:
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            for task in attempts:
                task.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)

    async def _attempt(self) -> None:
        """One question on a connection of its own; the first answered becomes the link's."""
        stream: Stream | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                stream = await self._open()
                await self._ask(stream)
        except PROBE_ERRORS as exc:
            self._failed(exc)
        else:
            if not self.ready:
                self._stream, stream = stream, None
                self._answered()
        finally:
            if stream is not None:
                stream[1].transport.abort()

    def _failed(self, exc: BaseException) -> None:
        self._hung = self._hung or isinstance(exc, TimeoutError)
        if self.ready:
            logger.warning(
                "Kafka at %s stopped answering (%s)",
                self.settings.bootstrap_servers,
                str(exc) or type(exc).__name__,
            )
        self.ready = False

    def _answered(self) -> None:
        if not self.ready:
            self._answered_again()
        self.ready = True

    def _answered_again(self) -> None:
        hung, self._hung = self._hung, False
        if not hung:
            logger.info("Kafka at %s answers again", self.settings.bootstrap_servers)
            return
        logger.info(
            "Kafka at %s answers again after it left requests unanswered: %d clients reconnect",
            self.settings.bootstrap_servers,
            len(self._clients),
        )
        for client in self._clients:
            client.drop_connections()

    async def _ask(self, stream: Stream) -> None:
        reader, writer = stream
        self._correlation = correlation = (self._correlation + 1) % 2**31
        writer.write(_api_versions_request(correlation))
        await writer.drain()
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        if not 4 <= size <= MAX_PROBE_REPLY:
            raise ValueError(f"not a Kafka reply (size {size})")
        (answered,) = struct.unpack_from(">i", await reader.readexactly(size))
        if answered != correlation:
            raise ValueError(f"reply to request {answered}, expected {correlation}")

    async def _open(self) -> Stream:
        tls = client_options(self.settings).get("ssl_context")
        error: OSError = OSError(f"no bootstrap server in {self.settings.bootstrap_servers!r}")
        for host, port in bootstrap_addresses(self.settings.bootstrap_servers):
            try:
                return await asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None)
            except OSError as exc:
                error = exc
        raise error

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream[1].transport.abort()  # at once: a TLS goodbye to a hung peer would wait


async def broker_answers(settings: KafkaSettings) -> bool:
    """Whether a bootstrap server answers a request now (``KafkaLink``, asked once)."""
    link = KafkaLink(settings)
    try:
        return await link.check()
    finally:
        link.close()


def _fail_buffered(producer: AIOKafkaProducer, reason: BaseException) -> None:
    """Fail every batch the producer holds, so that stop() returns at once instead of
    delivering them. aiokafka has no public way to drop what it buffers."""
    accumulator = producer._message_accumulator
    batches = [batch for queued in accumulator._batches.values() for batch in queued]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(reason)
    for batch in batches:  # the sends' futures carry the failure; nobody waits on these
        waiter = batch._drain_waiter
        if waiter.done() and not waiter.cancelled():
            waiter.exception()


_PARTITIONER = DefaultPartitioner()


@functools.lru_cache(maxsize=65_536)
def _partition_for(key: bytes, partitions: tuple[int, ...]) -> int:
    """The partition aiokafka's default partitioner gives ``key`` (a murmur2 hash in pure
    Python); kept, because most keys come back (an agent's records, a call's revisions)."""
    return int(_PARTITIONER(key, partitions, partitions))


class KafkaEnvelopeProducer:
    """Produces envelopes keyed by ``envelope.key`` with ``acks=all``."""

    def __init__(self, settings: KafkaSettings, *, linger_ms: int = 1) -> None:
        self.settings = settings
        self.linger_ms = linger_ms
        self._producer = self._new_producer()
        self.started = False

    def _new_producer(self) -> AIOKafkaProducer:
        # Idempotent producers need InitProducerId, which Tansu does not implement; the
        # consumers are idempotent instead (router.store watermarks).
        return AIOKafkaProducer(
            **client_options(self.settings),
            acks="all",
            linger_ms=self.linger_ms,
            enable_idempotence=False,
            max_batch_size=self.settings.max_batch_bytes,
        )

    async def start(self) -> None:
        await _start_with_retry(self._producer, self.settings)
        self.started = True

    async def stop(self) -> None:
        self.started = False
        await self._producer.stop()

    async def abandon(self, reason: BaseException) -> None:
        """Fail every envelope not acknowledged yet with ``reason`` and close the connections.

        aiokafka would retry them into whichever broker answers next. After a broker restarted
        empty, that writes into topics that do not exist there yet: Kafka auto-creates them
        with its default partition count, Tansu acknowledges the writes and later serves them
        interleaved with the recreated topic's, so that envelopes acknowledged after the
        topic was recreated are never read. ``restart`` makes a fresh producer.
        """
        if not self.started:
            return
        self.started = False
        # Swapped before the first await: a ``restart`` meanwhile starts the fresh producer.
        old, self._producer = self._producer, self._new_producer()
        _fail_buffered(old, reason)
        # A request in flight into a broker that hangs would hold stop() for its timeout.
        _drop_connections(old.client)
        await _close_quietly(old)

    async def restart(self) -> bool:
        """Start a fresh producer after ``abandon``; False while the broker refuses it."""
        if self.started:
            return True
        try:
            await self._producer.start()
        except KafkaError:
            await _close_quietly(self._producer)
            self._producer = self._new_producer()
            return False
        self.started = True
        return True

    def drop_connections(self) -> None:
        """See ``KafkaLink.track``."""
        if self.started:
            _drop_connections(self._producer.client)

    async def send(self, topic: str, envelope: Envelope) -> asyncio.Future[Any]:
        """Queue one envelope; the returned future resolves once the broker has it.

        Both this call and the future fail with the project's errors (``broker_error``)."""
        try:
            future = await self._producer.send(topic, envelope.encode(), key=envelope.key.encode())
        except KafkaError as exc:  # no buffer space, no topic metadata in time
            raise broker_error(exc) from exc
        return _translated_future(future)

    async def send_many(self, topic: str, envelopes: Sequence[Envelope]) -> list[asyncio.Future[Any]]:
        """Queue envelopes as one batch per partition; returns each envelope's delivery (the
        envelopes of one batch share theirs), which resolves once the broker has it and fails
        with the project's errors. So does this call: then what it queued before the refusal
        has settled.

        Each envelope goes to the partition ``send`` would choose for its key (aiokafka's
        default partitioner), in order, so each key's order holds. One aiokafka ``send``
        per envelope costs the caller several times more CPU (docs/performance.md)."""
        deliveries: list[asyncio.Future[Any] | None] = [None] * len(envelopes)
        sent: list[asyncio.Future[Any]] = []

        async def ship(partition: int, batch: Any, members: list[int]) -> None:
            future = _translated_future(await self._producer.send_batch(batch, topic, partition=partition))
            sent.append(future)
            for index in members:
                deliveries[index] = future

        partitions = await self._partitions_of(topic)
        try:
            open_batches: dict[int, tuple[Any, list[int]]] = {}  # partition -> aiokafka BatchBuilder, members
            for index, envelope in enumerate(envelopes):
                key, value = envelope.key.encode(), envelope.encode()
                partition = _partition_for(key, partitions)
                if (current := open_batches.get(partition)) is not None:
                    if current[0].append(key=key, value=value, timestamp=None) is not None:
                        current[1].append(index)
                        continue
                    await ship(partition, *open_batches.pop(partition))  # full
                batch = self._producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is not None:
                    open_batches[partition] = (batch, [index])
                else:  # larger than a batch: aiokafka sends it alone
                    alone = _translated_future(await self._producer.send(topic, value, key=key, partition=partition))
                    sent.append(alone)
                    deliveries[index] = alone
            for partition, (batch, members) in open_batches.items():
                await ship(partition, batch, members)
        except KafkaError as exc:  # no buffer space
            await asyncio.gather(*sent, return_exceptions=True)
            raise broker_error(exc) from exc
        return [delivery for delivery in deliveries if delivery is not None]

    async def _partitions_of(self, topic: str) -> tuple[int, ...]:
        try:
            partitions = tuple(sorted(await self._producer.partitions_for(topic)))
        except KafkaError as exc:  # no topic metadata in time
            raise broker_error(exc) from exc
        if not partitions:  # metadata that lists none (a topic being recreated)
            raise BrokerUnavailableError(f"Kafka unavailable (no partitions known for topic {topic!r})")
        return partitions

    async def knows_partitions(self, topic: str) -> bool:
        """Whether the producer has fresh partitions for ``topic`` (after a broker lost its
        topics, sending before that would map keys by a partition count about to change)."""
        try:
            await self._producer.client.force_metadata_update()
            partitions = await self._producer.partitions_for(topic)
        except KafkaError:
            return False
        return bool(partitions)

    async def send_and_wait(self, topic: str, envelope: Envelope) -> None:
        await (await self.send(topic, envelope))

    async def send_raw(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        """Produce bytes as they are (dead-lettering a message that is not an envelope)."""
        try:
            await self._producer.send_and_wait(topic, value, key=key)
        except KafkaError as exc:
            raise broker_error(exc) from exc

    async def flush(self) -> None:
        try:
            await self._producer.flush()
        except KafkaError as exc:
            raise broker_error(exc) from exc


@immutable
class Consumed:
    """One message read from a topic, with when it was read (monotonic seconds)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    received_at: float
    # The reader's assignment when it was read: after a rebalance (a broker that restarted
    # empty causes one) its offset may belong to a topic that no longer exists.
    generation: int = 0

    @property
    def part(self) -> str:
        return f"{self.topic}:{self.partition}"


# aiokafka ships no types, so its base class is Any to mypy.
class _AssignmentListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assigned: Callable[[], None], on_revoked: Callable[[], None]) -> None:
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: object) -> None:
        self.on_revoked()

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.on_assigned()


def _topic_partition(part: str) -> TopicPartition:
    topic, partition = part.rsplit(":", 1)
    return TopicPartition(topic, int(partition))


IDLE_WAIT_SHARE = 0.1  # of the quiet time so far: what the first message after it may wait more


def idle_fetch_wait_ms(settings: KafkaSettings, quiet_s: float) -> int:
    """How long the broker may hold an empty fetch once a consumer has read nothing for
    ``quiet_s``: ``fetch_max_wait_ms`` at first, growing with the quiet to a tenth of it, up to
    ``fetch_idle_wait_ms``. Tansu answers a waiting fetch only when its wait ends, so every
    consumer of a quiet pipeline would otherwise ask 100 times a second (docs/performance.md)."""
    grown = min(settings.fetch_idle_wait_ms, int(quiet_s * 1000 * IDLE_WAIT_SHARE))
    return max(settings.fetch_max_wait_ms, grown)


class KafkaGroupReader:
    """A consumer-group member that reads batches and commits only what it is told to."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        group_id: str,
        on_assigned: Callable[[], None] | None = None,
    ) -> None:
        """``on_assigned`` runs after every rebalance, before messages of the new assignment."""
        self.settings = settings
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            session_timeout_ms=settings.session_timeout_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_records=500,
        )
        self.generation = 0
        self._last_read_at = time.monotonic()  # when a read last returned messages
        # Between a rebalance's revocation and its assignment this member reads nothing.
        self.in_group = False
        self._on_assigned = on_assigned
        listener = _AssignmentListener(self._assigned, self._revoked)
        self._consumer.subscribe(topics=list(topics), listener=listener)

    def _assigned(self) -> None:
        self.generation += 1
        self.in_group = True
        if self._on_assigned is not None:
            self._on_assigned()

    def _revoked(self) -> None:
        self.in_group = False

    @property
    def assigned(self) -> bool:
        """Readiness: the group has given this member its partitions (none for a member
        beyond the partition count, which stands by for a rebalance)."""
        return self.in_group

    async def start(self) -> None:
        await _start_with_retry(self._consumer, self.settings)

    async def stop(self) -> None:
        self.in_group = False
        await _stop_consumer(self._consumer)

    def drop_connections(self) -> None:
        """See ``KafkaLink.track``."""
        _drop_connections(self._consumer._client)

    async def read(self, timeout_ms: int = 100) -> list[Consumed]:
        try:
            batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise broker_error(exc) from exc
        now = time.monotonic()
        read = [
            Consumed(tp.topic, tp.partition, m.offset, m.key, m.value, now, self.generation)
            for tp, messages in batches.items()
            for m in messages
        ]
        self._pace_fetches(now, bool(read))
        return read

    def _pace_fetches(self, now: float, read_some: bool) -> None:
        if read_some:
            self._last_read_at = now
        _set_fetch_wait(self._consumer, idle_fetch_wait_ms(self.settings, now - self._last_read_at))

    async def commit(self, processed: Sequence[Consumed], unhandled: Sequence[Consumed] = ()) -> None:
        """Commit past the highest processed offset of each partition, but not past a message
        in ``unhandled`` (read, not handled yet: to be read again after a rebalance).
        Messages read before the latest rebalance are not committed: their partition may
        have moved, or been recreated empty with offsets counting from 0."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for message in processed:
            if message.generation != self.generation:
                continue
            tp = TopicPartition(message.topic, message.partition)
            current = offsets.get(tp)
            if current is None or message.offset + 1 > current.offset:
                offsets[tp] = OffsetAndMetadata(message.offset + 1, "")
        for message in unhandled:
            tp = TopicPartition(message.topic, message.partition)
            if tp in offsets and offsets[tp].offset > message.offset:
                offsets[tp] = OffsetAndMetadata(message.offset, "")
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # A rebalance took the partition away: its new owner re-reads from the last
                # commit and the watermarks make the redelivery harmless.
                logger.warning("offset commit failed (%s); events will be redelivered", exc)

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    async def rewind(self) -> int:
        """Every assigned partition back to its committed offset (its beginning if none), so
        that what was read since is read again; returns how many partitions. A partition a
        rebalance took meanwhile is skipped: its next owner reads from the commit anyway."""
        rewound = 0
        for tp in self.assignment():
            try:
                committed = await self._consumer.committed(tp)
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
            except IllegalStateError:
                continue
            except KafkaError as exc:
                raise broker_error(exc) from exc
            rewound += 1
        return rewound

    async def behind(self, marks: Marks) -> list[str]:
        """The partitions whose offset committed by the group (by any member) is short of
        its mark (router.catchup)."""
        parts = {part: _topic_partition(part) for part in marks}
        try:
            committed = await asyncio.gather(*(self._consumer.committed(tp) for tp in parts.values()))
        except KafkaError as exc:
            raise broker_error(exc) from exc
        return lagging(marks, dict(zip(parts, committed, strict=True)))

    async def lag(self) -> dict[str, int]:
        """Messages not yet read, per topic, summed over this member's assigned partitions.

        Highwater comes with every fetch response, so a partition not fetched yet (just
        assigned) is left out rather than guessed.
        """
        # Highwaters first, with no await between: the assignment cannot change under us.
        highwaters = {tp: self._consumer.highwater(tp) for tp in self.assignment()}
        lag: dict[str, int] = {}
        for tp, highwater in highwaters.items():
            if highwater is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:  # revoked by a rebalance meanwhile
                continue
            except KafkaError as exc:
                raise broker_error(exc) from exc
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
        return lag
