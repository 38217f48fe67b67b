"""Routing worker: a Kafka consumer-group member that applies events and makes offers.

Any number of these run side by side; Kafka spreads the partitions over them and Redis
holds all state. Offsets are committed only after a batch's events are applied and the
commands they produced are acknowledged by Kafka, so a crash re-delivers, never skips;
the store's watermarks make the re-delivery harmless.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from router.bus import Consumed, KafkaEnvelopeProducer, KafkaGroupReader, TopicGuardian, Topics, ensure_topics
from router.catchup import GroupProgress
from router.clock import Clock
from router.commands import (
    CallbackCommand,
    OfferCommand,
    OverflowCommand,
    PauseCommand,
    RecordCommand,
    callback_envelope,
    offer_envelope,
    overflow_envelope,
    pause_envelope,
    record_envelope,
)
from router.context import RoutingContext
from router.engine import RoutingEngine
from router.envelope import Envelope, decode
from router.errors import AcdError, BrokerUnavailableError, ConfigError, MalformedEventError
from router.fencing import FenceGate
from router.inbound import domain_event
from router.live_config import LiveConfig
from router.metrics import RelayMetrics, RoutingMetrics
from router.sequencing import KeySequencer
from router.settings import AcdSettings
from router.store import (
    Position,
    RedisChainStore,
    RedisFenceStore,
    RedisRoutingStore,
    RedisTimerStore,
    shared_scripts,
)
from router.store.outbox import RedisOutboxStore
from router.store.replication import ReplicationBarrier, Settled
from workers.lifecycle import Component, ProcessContext, Task, process_main
from workers.relay import RecordRelay
from workers.replica_gate import Held, ReplicaGate
from workers.runtime import wait_or_stop

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 5.0
LAG_EVERY_S = 1.0


def position_of(envelope: Envelope, message: Consumed) -> Position:
    """Deduplicate on the producer's sequence when the envelope has one (it survives a broker
    that restarts empty), else on the Kafka offset."""
    if envelope.session is not None and envelope.seq is not None:
        return Position(envelope.source, envelope.seq, envelope.session)
    return Position(message.part, message.offset)


def by_key(batch: list[Consumed]) -> list[list[Consumed]]:
    """A batch split per message key (a call, an agent's device), each in offset order.

    Only one key's events depend on each other's order (Kafka keeps them in order on one
    partition); different keys are handled side by side, so that their Redis work shares
    round trips (router.store.scripts batches what is asked for together)."""
    chains: dict[tuple[str, bytes | None], list[Consumed]] = {}
    for message in batch:
        chains.setdefault((message.part, message.key), []).append(message)
    return list(chains.values())


class KafkaCommandSink:
    """Produces the engine's commands; ``flush`` waits until Kafka has all of them.

    Holding (with Sentinel: workers/replica_gate.py): commands wait in the sink until the
    gate takes them, and either releases them (a replica has the decisions they carry) or
    drops them (a failover lost those decisions; their events are read again)."""

    def __init__(
        self,
        producer: KafkaEnvelopeProducer,
        topics: Topics,
        metrics: RoutingMetrics,
        source: str,
        *,
        barrier: ReplicationBarrier | None = None,
    ) -> None:
        """``barrier``: hold the commands, each stamped with the barrier's generation (the
        primary changes it has seen) when it was made."""
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.source = source
        self.barrier = barrier
        self._pending: set[asyncio.Future[Any]] = set()  # deliveries, one per batch
        self._held: list[Held] = []
        self._queued: list[tuple[Envelope, float | None]] = []  # for the next ``_ship``
        self._shipping: asyncio.Task[None] | None = None
        self._refused: AcdError | None = None  # by the broker, for ``flush`` to raise

    async def offer(self, command: OfferCommand, started: float) -> None:
        elapsed = time.monotonic() - started
        envelope = offer_envelope(command, self.source, decision_ms=elapsed * 1000)
        self.metrics.decision_latency.observe(elapsed)
        await self._produce(envelope, started)
        self.metrics.commands.labels("offer").inc()

    async def pause(self, command: PauseCommand) -> None:
        await self._produce(pause_envelope(command, self.source))
        self.metrics.commands.labels("pause_agent").inc()

    async def overflow(self, command: OverflowCommand) -> None:
        await self._produce(overflow_envelope(command, self.source))
        self.metrics.commands.labels("overflow").inc()

    async def record(self, command: RecordCommand) -> None:
        await self._produce(record_envelope(command, self.source))
        self.metrics.commands.labels("record").inc()

    async def callback(self, command: CallbackCommand, started: float) -> None:
        """A callback command (router/callback.py): counted as a decision like an offer."""
        self.metrics.decision_latency.observe(time.monotonic() - started)
        await self._produce(callback_envelope(command, self.source), started)
        self.metrics.commands.labels("callback").inc()

    async def _produce(self, envelope: Envelope, started: float | None = None) -> None:
        if self.barrier is not None:
            self._held.append(Held(envelope, started, self.barrier.generation))
        else:
            await self._send(envelope, started)

    async def _send(self, envelope: Envelope, started: float | None) -> None:
        """Queue the command for the batch ``_ship`` produces as soon as this pass of the
        event loop is over: the commands that a poll's keys, handled side by side, make at
        about the same time go together (``send_many``: far less CPU than one ``send``
        each, docs/performance.md)."""
        self._queued.append((envelope, started))
        if self._shipping is None or self._shipping.done():
            self._shipping = asyncio.get_running_loop().create_task(self._ship())

    async def _ship(self) -> None:
        await asyncio.sleep(0)  # the other handlers of this pass queue theirs
        while self._queued:
            queued, self._queued = self._queued, []
            try:
                deliveries = await self.producer.send_many(self.topics.routing_commands, [e for e, _ in queued])
            except AcdError as exc:
                # As a refused ``send`` was: the events stay applied, an offer whose command
                # never left goes back in line at its deadline; ``flush`` reports it.
                logger.error("Kafka did not take %d routing commands: %s", len(queued), exc)
                self._refused = exc
                continue
            for (_, started), delivery in zip(queued, deliveries, strict=True):
                if started is not None:
                    delivery.add_done_callback(functools.partial(self._acked, started=started))
            self._pending.update(deliveries)

    def take_held(self) -> list[Held]:
        """The commands held so far (their decisions are in Redis already), out of the sink."""
        held, self._held = self._held, []
        return held

    async def release(self, held: list[Held]) -> None:
        """Produce commands taken with ``take_held``."""
        for command in held:
            await self._send(command.envelope, command.started)

    def _acked(self, future: asyncio.Future[Any], started: float) -> None:
        if not future.cancelled() and future.exception() is None:
            self.metrics.command_acked_latency.observe(time.monotonic() - started)

    async def flush(self) -> None:
        """Return once Kafka has every command made so far; the project's error if it refused any."""
        if self._shipping is not None:
            await self._shipping
        pending, self._pending = self._pending, set()
        refused, self._refused = self._refused, None
        if pending:
            await asyncio.gather(*pending)
        if refused is not None:
            raise refused


class RoutingWorker:
    """Consumes AMI events and dispatch outcomes; runs the timers while it holds the lease."""

    def __init__(
        self,
        settings: AcdSettings,
        *,
        engine: RoutingEngine,
        reader: KafkaGroupReader,
        producer: KafkaEnvelopeProducer,
        sink: KafkaCommandSink,
        metrics: RoutingMetrics,
        sequencer: KeySequencer[Consumed],
        fences: FenceGate,
        relay: RecordRelay,
        gate: ReplicaGate | None = None,
    ) -> None:
        self.settings = settings
        self.relay = relay
        self.gate = gate
        self._redis_failed = False  # during this batch (with a gate only)
        self.engine = engine
        self.sequencer = sequencer
        self.fences = fences
        self.reader = reader
        self.producer = producer
        self.sink = sink
        self.metrics = metrics
        self.topics = Topics(settings.kafka.topic_prefix)
        self.worker_id = f"route-{uuid.uuid4().hex[:8]}"
        self._last_sweep = 0.0
        self._writers = 0  # draining tasks whose transitions may still append records
        self._quiet = asyncio.Event()  # ... set once none is left
        self._committing: asyncio.Task[None] | None = None  # the latest batch's offset commit

    def component(self) -> Component:
        """Consume, timers and the record relay drain at stop; the lag gauge and the topic
        guardian just stop."""
        guardian = TopicGuardian(self.settings.kafka, self.topics.all())
        return Component(
            draining=[self._writing(self.consume), self._writing(self.timers), self.relay_records],
            background=[self.report_lag, lambda stop: guardian.run(), self.relay.watch_broker],
            reload=self.apply_config,
        )

    def _writing(self, task: Task) -> Task:
        """``task``, counted among those whose transitions append records (relay_records)."""
        self._writers += 1

        async def run(stop: asyncio.Event) -> None:
            try:
                await task(stop)
            finally:
                self._writers -= 1
                if not self._writers:
                    self._quiet.set()

        return run

    async def relay_records(self, stop: asyncio.Event) -> None:
        """The record relay; at stop, its last pass waits until this worker's events and
        timers are done, so that the records of their last transitions go out too."""
        await self.relay.run(stop, before_drain=self._quiet.wait)

    async def apply_config(self, fresh: AcdSettings) -> None:
        """A reload's queues and agents; every configured profile is re-applied *with force*,
        so skills edited through the API give way to the file (a restart keeps them)."""
        agents = {agent.id: agent for agent in fresh.agents}
        await self.engine.apply_config(fresh.queue_map(), agents)
        logger.info(
            "configuration reloaded: queues %s, %d agents (skills as in the file)",
            sorted(fresh.queue_map()),
            len(agents),
        )

    async def report_lag(self, stop: asyncio.Event) -> None:
        """Keep the consumer-lag gauge current (a topic with no partition assigned reads 0)."""
        topics = (self.topics.ami_events, self.topics.routing_outcomes)
        while True:
            try:
                lag = await self.reader.lag()
            except AcdError as exc:  # a rebalance or a broker hiccup: next time
                if not exc.retriable:
                    raise
                logger.debug("consumer lag not read: %s", exc)
            else:
                for topic in topics:
                    self.metrics.consumer_lag.labels(topic).set(lag.get(topic, 0))
            if await wait_or_stop(stop, LAG_EVERY_S):
                return

    async def consume(self, stop: asyncio.Event) -> None:
        try:
            await self._consume(stop)
        except BaseException:
            if self._committing is not None:
                self._committing.cancel()  # a commit lost is a redelivery; the loop's error goes up
            raise
        if self._committing is not None:
            await self._committing  # stopping: the last batch's offsets go in before the reader stops

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._read(stop)
            gate = self._gate_for(batch)
            if gate is not None and not await gate.before_batch(stop):
                continue  # a failover: the partitions were rewound, the batch comes again
            self._redis_failed = False
            await asyncio.gather(*(self._process_in_order(chain, stop) for chain in by_key(batch)))
            await self._apply_overdue(stop)
            if gate is not None and self._redis_failed:
                await gate.after_outage(stop)
                continue
            if (
                await self._flush_commands()
                and await self._save_chains()
                and (gate is None or await self._replicated(gate, stop))
            ):
                # Envelopes held back for order are not handled yet: not committed past.
                await self._commit_behind(batch, unhandled=self.sequencer.held())

    async def _commit_behind(self, batch: list[Consumed], unhandled: list[Consumed]) -> None:
        """Commit the batch's offsets while the next poll is read and applied: its commands
        are acknowledged and its chains saved already, so nothing waits for the commit (one
        that is lost only means a redelivery, which is harmless). One commit at a time, in
        order; the previous one's failure (beyond a rebalance, which it logs) is raised here."""
        if self._committing is not None:
            await self._committing
        self._committing = asyncio.create_task(self.reader.commit(batch, unhandled=unhandled))

    async def _read(self, stop: asyncio.Event) -> list[Consumed]:
        try:
            return await self.reader.read(timeout_ms=100)
        except AcdError as exc:  # a broker restarting, a rebalance: wait and read again
            if not exc.retriable:
                raise
            logger.warning("reading from Kafka failed (%s); retrying", exc)
            await wait_or_stop(stop, 0.5)
            return []

    async def _process_in_order(self, messages: list[Consumed], stop: asyncio.Event) -> None:
        for message in messages:
            await self._process(message, stop)

    async def _flush_commands(self) -> bool:
        """Wait until Kafka has the batch's commands; False (offsets not committed) if it refused."""
        try:
            await self.sink.flush()
        except AcdError as exc:
            if not exc.retriable:
                raise
            # The events are applied; offers whose command was lost go back in line at their
            # deadline (routing.offer_timeout_s), so nothing waits on a command that never left.
            logger.error("Kafka did not take routing commands (%s); offsets not committed", exc)
            return False
        return True

    async def _process(self, message: Consumed, stop: asyncio.Event) -> None:
        if self._redis_failed:
            return
        self.metrics.events_consumed.labels(message.topic).inc()
        try:
            envelope = decode(message.value)
        except MalformedEventError as exc:
            await self._malformed(message, exc)
            return
        if not await self._fenced_in(envelope, message):
            self.metrics.events_fenced.inc()
            logger.warning("envelope %s of a deposed ingest (token %s) dropped", envelope.id, envelope.fence)
            return
        if not await self._admit(envelope, message):
            self.metrics.events_reordered.labels(result="held_back").inc()
            return
        await self._apply_in_line(envelope, message, stop)

    async def _fenced_in(self, envelope: Envelope, message: Consumed) -> bool:
        """False: written by a deposed active ingest after its successor took over."""
        try:
            return await self.fences.admit(message.part, message.offset, envelope.fence)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("fencing token of %s not checked (Redis unavailable: %s)", envelope.id, exc)
            self._redis_failed_now()
            return True

    async def _admit(self, envelope: Envelope, message: Consumed) -> bool:
        try:
            return await self.sequencer.admit(envelope, message)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("order of %s not checked (Redis unavailable: %s)", envelope.key, exc)
            self._redis_failed_now()
            return True

    async def _apply_in_line(self, envelope: Envelope, message: Consumed, stop: asyncio.Event) -> None:
        """Apply an envelope, then those of its key held back waiting for it, in order."""
        item: tuple[Envelope, Consumed] | None = (envelope, message)
        while item is not None:
            await self._apply(*item, stop)
            item = self.sequencer.applied(item[0])
            if item is not None:
                self.metrics.events_reordered.labels(result="released").inc()

    async def _apply_overdue(self, stop: asyncio.Event) -> None:
        """Envelopes held back too long for a predecessor that never came: apply them now."""
        for envelope, message in self.sequencer.overdue():
            self.metrics.events_reordered.labels(result="released_after_wait").inc()
            await self._apply_in_line(envelope, message, stop)

    async def _save_chains(self) -> bool:
        try:
            await self.sequencer.save()
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("event order not saved (Redis unavailable: %s); offsets not committed", exc)
            return False
        return True

    def _gate_for(self, batch: list[Consumed]) -> ReplicaGate | None:
        """With Sentinel, the gate a batch goes through; none for an empty poll with nothing
        held back for order, which writes nothing (an idle worker polls ten times a second),
        unless a timer tick saw a failover that the consume loop must act on."""
        gate = self.gate
        if gate is None or batch or self.sequencer.parked or gate.failed_over:
            return gate
        return None

    async def _replicated(self, gate: ReplicaGate, stop: asyncio.Event) -> bool:
        """With Sentinel (workers/replica_gate.py): the batch's commands go once a replica has
        its writes, and only then may its offsets be committed."""
        return await gate.settle(stop) is Settled.REPLICATED and await self._flush_commands()

    def _redis_failed_now(self) -> None:
        """With Sentinel, the rest of the batch is not applied (ReplicaGate.after_outage)."""
        if self.gate is not None:
            self._redis_failed = True

    async def _apply(self, envelope: Envelope, message: Consumed, stop: asyncio.Event) -> None:
        if self._redis_failed:
            return
        try:
            event = domain_event(envelope, roster_queue=self.settings.ami.roster_queue)
        except MalformedEventError as exc:
            await self._malformed(message, exc)
            return
        # How far behind the producer this worker reads (a stall upstream of the decision).
        self.metrics.event_age.observe(
            max(0.0, self.engine.clock.real_seconds(self.engine.clock.now() - envelope.ts))
        )
        if event is None:
            return
        position = position_of(envelope, message)
        while True:
            try:
                await self.engine.handle(event, position, message.received_at)
                return
            except BrokerUnavailableError as exc:
                # A command could not be produced: the event is applied; an offer whose
                # command never left goes back in line at its deadline.
                logger.error("Kafka error while handling %s@%s: %s", message.part, message.offset, exc)
                return
            except AcdError as exc:
                if not exc.retriable:
                    await self._poisoned(message, event, exc)
                    return
                if not await self._retry_when_redis_is_back(message, exc, stop):
                    return
            except Exception as exc:  # a poison message must not stop the partition
                await self._poisoned(message, event, exc)
                return

    async def _retry_when_redis_is_back(self, message: Consumed, exc: AcdError, stop: asyncio.Event) -> bool:
        """Redis is down: hold the partition (no commit) and retry until it is back; with
        Sentinel, give the batch up instead (ReplicaGate.after_outage reads it again)."""
        if self.gate is not None:
            logger.warning("Redis unavailable while handling %s (%s); the batch is read again", message.part, exc)
            self._redis_failed = True
            return False
        logger.warning("Redis unavailable while handling %s (%s); retrying", message.part, exc)
        if await wait_or_stop(stop, 0.5):
            raise exc
        return True

    async def _poisoned(self, message: Consumed, event: object, exc: Exception) -> None:
        logger.error(
            "could not handle %s@%s (%s); dead-lettered",
            message.part,
            message.offset,
            event,
            exc_info=exc,
        )
        self.metrics.event_errors.labels(type(event).__name__).inc()
        await self._dead_letter(message, f"{type(exc).__name__}: {exc}")

    async def _malformed(self, message: Consumed, exc: MalformedEventError) -> None:
        self.metrics.events_malformed.labels(message.topic).inc()
        await self._dead_letter(message, f"malformed: {exc}")

    async def _dead_letter(self, message: Consumed, reason: str) -> None:
        logger.warning("dead-lettering %s offset %s: %s", message.part, message.offset, reason)
        await self.producer.send_raw(self.topics.dead_letters, message.value, message.key)

    async def timers(self, stop: asyncio.Event) -> None:
        interval = self.settings.routing.timer_interval_s
        timers = self.engine.timers
        while not await wait_or_stop(stop, interval):
            try:
                if not await timers.hold_lease("timer_lease", self.worker_id, interval * 5):
                    continue
                if self.gate is not None and not await self.gate.before_tick():
                    continue
                self.metrics.timer_runs.inc()
                started = time.monotonic()
                await self.engine.tick(started)
                if started - self._last_sweep > SWEEP_EVERY_S:
                    self._last_sweep = started
                    await self.engine.sweep(started)
                if self.gate is not None:
                    await self.gate.settle(stop, consuming=False)
                await self._flush_commands()
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.warning("timers skipped: %s", exc)


async def build_engine(
    settings: AcdSettings,
    redis: Redis,
    clock: Clock,
    sink: KafkaCommandSink,
    metrics: RoutingMetrics,
    progress: GroupProgress,
) -> RoutingEngine:
    agents = {agent.id: agent for agent in settings.agents}
    config = LiveConfig(settings.queue_map(), agents, settings.routing.unknown_queue)
    seed = settings.qa.seed_for(settings.site)
    context = RoutingContext(config, settings.routing, clock, sink, metrics, qa_seed=seed)
    # One script runner for both stores: what handlers and timers ask for together batches.
    scripts = shared_scripts(redis, settings.site, RedisRoutingStore, RedisTimerStore)
    zone = settings.timezone or "UTC"
    store = RedisRoutingStore(redis, settings.site, scripts=scripts, timezone=zone)
    timers = RedisTimerStore(redis, settings.site, scripts=scripts, timezone=zone)
    engine = RoutingEngine(context, store=store, timers=timers, progress=progress)
    await engine.seed_agents()
    return engine



async def open_routing(ctx: ProcessContext) -> Component:
    """Redis, the topics, the producer, then the consumer group; ready while Redis answers,
    the broker answers and the group has given this worker its partitions."""
    settings = ctx.settings
    if not settings.queues:
        raise ConfigError("no queues configured: add at least one queue under 'queues:' in the config file")
    metrics = RoutingMetrics(
        ctx.registry,
        [q.service_level.threshold_s for q in settings.queues],
        queues=[q.name for q in settings.queues],
    )
    topics = Topics(settings.kafka.topic_prefix)
    redis = await ctx.redis()
    await ensure_topics(settings.kafka, topics.all())
    producer = KafkaEnvelopeProducer(settings.kafka)
    await ctx.open(producer.start, producer.stop)
    sequencer: KeySequencer[Consumed] = KeySequencer(RedisChainStore(redis, settings.site))
    fences = FenceGate(RedisFenceStore(redis, settings.site))
    reader = KafkaGroupReader(
        settings.kafka,
        [topics.ami_events, topics.routing_outcomes],
        settings.kafka.consumer_group,
        on_assigned=lambda: _forget_order(sequencer, fences, metrics),
    )
    await ctx.open(reader.start, reader.stop)
    broker = ctx.kafka(producer, reader)
    ctx.link("kafka", lambda: reader.assigned and broker.ready)
    barrier = None
    if settings.redis.replication_barrier:
        barrier = ReplicationBarrier(redis, settings.site, wait_ms=settings.redis.replica_wait_ms)
        await barrier.start()
    sink = KafkaCommandSink(producer, topics, metrics, source=f"router:{settings.site}", barrier=barrier)
    engine = await build_engine(settings, redis, ctx.clock, sink, metrics, progress=reader)
    relay = RecordRelay(
        RedisOutboxStore(redis, settings.site),
        producer,
        topics,
        RelayMetrics(ctx.registry),
        site=settings.site,
        consumer=f"relay-{uuid.uuid4().hex[:8]}",
        batch=settings.routing.relay_batch,
        claim_idle_s=settings.routing.relay_claim_idle_s,
    )
    gate = None
    if barrier is not None:
        gate = ReplicaGate(
            barrier,
            sink,
            reader,
            metrics,
            forget_order=lambda: _forget_order(sequencer, fences, metrics),
            grace_s=settings.redis.replica_grace_s,
        )
    worker = RoutingWorker(
        settings,
        engine=engine,
        reader=reader,
        producer=producer,
        sink=sink,
        metrics=metrics,
        sequencer=sequencer,
        fences=fences,
        relay=relay,
        gate=gate,
    )
    return worker.component()


def _forget_order(sequencer: KeySequencer[Consumed], fences: FenceGate, metrics: RoutingMetrics) -> None:
    """Partitions moved: what this worker knew of their keys' order and fencing marks may
    be stale now."""
    fences.forget()
    dropped = sequencer.forget()
    if dropped:
        metrics.events_reordered.labels(result="reread_after_rebalance").inc(dropped)
        logger.warning("rebalance: %d envelopes held back for order will be read again from Kafka", dropped)


run_routing = process_main("route", open_routing)
