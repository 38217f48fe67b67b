"""Dispatcher: routing commands become AMI actions; failures go back as outcomes.

An offer is claimed in Redis before its Redirect is sent, so a command that arrives after
its offer was withdrawn (timed out, caller gone) rings nobody. A Redirect that Asterisk
refuses produces an OfferFailed outcome (caller gone: abandoned; otherwise: back in line).
When the AMI link is down, commands wait (the partition is not committed); an offer whose
Redirect may or may not have happened is left to the dispatch timeout rather than retried,
because ringing a second agent for one caller is worse than a short delay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from router.ami.gateway import AmiGateway
from router.bus import Consumed, KafkaEnvelopeProducer, KafkaGroupReader, TopicGuardian, Topics, ensure_topics
from router.callback import claim_window_s, originate_action
from router.clock import Clock
from router.commands import (
    CallbackCommand,
    OfferCommand,
    OverflowCommand,
    PauseCommand,
    RecordCommand,
    failure_envelope,
    parse_callback,
    parse_offer,
    parse_overflow,
    parse_pause,
    parse_record,
)
from router.envelope import (
    ROUTING_CALLBACK,
    ROUTING_OFFER,
    ROUTING_OVERFLOW,
    ROUTING_PAUSE,
    ROUTING_RECORD,
    decode,
)
from router.errors import (
    AcdError,
    AmiActionError,
    AmiConnectionError,
    AmiShuttingDownError,
    BrokerUnavailableError,
    MalformedEventError,
)
from router.metrics import DispatchMetrics
from router.settings import AcdSettings
from router.store import RedisRoutingStore
from workers.lifecycle import Component, ProcessContext, process_main
from workers.runtime import wait_or_stop

logger = logging.getLogger(__name__)

# "Redirect failed, channel not up." is Asterisk's answer for a channel already hanging up
# (main/manager.c action_redirect): its Hangup follows, so the caller is as good as gone.
CHANNEL_GONE_MARKERS = ("no such channel", "does not exist", "not found", "channel not up")
# MixMonitor's options: b records only while the caller's channel is bridged (with its agent,
# or whoever it was transferred to; not music on hold); both directions of the channel are
# mixed into one file, MixMonitor's default.
MIXMONITOR_OPTIONS = "b"


def channel_gone(message: str) -> bool:
    """Whether Asterisk's error text says the caller's channel no longer exists or is hanging up."""
    lowered = message.lower()
    return any(marker in lowered for marker in CHANNEL_GONE_MARKERS)


def claimant_of(source: str, pid: int, session: int, message: Consumed) -> str:
    """One delivery of a command to one dispatcher process: ``claimed_by`` on a claimed call.
    The same while the claim is retried, another after a restart or a redelivery."""
    return f"{source}:{pid}:{session}:{message.part}@{message.offset}:{message.generation}"


def claimant_pid(claimed_by: str) -> int | None:
    """The process id in a claimant (``claimant_of``), or None. Read from the end: the source before it
    (``dispatcher:host:port``) and the partition after it (``topic:partition``) hold colons."""
    fields = claimed_by.rsplit(":", 5)
    if len(fields) != 6 or not fields[1].isdigit():
        return None
    return int(fields[1])


RECORDING_HINTS = {
    "permission_denied": " (the AMI user needs 'write = system' in manager.conf for MixMonitor: docs/asterisk.md)",
    "not_available": " (app_mixmonitor is not loaded: 'module load app_mixmonitor.so')",
}


def recording_failure(message: str) -> str:
    """What Asterisk's refusal of MixMonitor means, as acd_dispatch_recordings_total names it."""
    lowered = message.lower()
    if channel_gone(message):
        return "channel_gone"
    if "permission denied" in lowered:
        return "permission_denied"
    if "invalid/unknown command" in lowered:
        return "not_available"
    return "refused"


class Dispatcher:
    """Executes routing commands against one Asterisk."""

    def __init__(
        self,
        settings: AcdSettings,
        *,
        gateway: AmiGateway,
        store: RedisRoutingStore,
        reader: KafkaGroupReader,
        producer: KafkaEnvelopeProducer,
        clock: Clock,
        metrics: DispatchMetrics,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.reader = reader
        self.producer = producer
        self.clock = clock
        self.metrics = metrics
        self.topics = Topics(settings.kafka.topic_prefix)
        self.source = f"dispatcher:{settings.ami.host}:{settings.ami.port}"
        self._session, self._seq = int(time.time() * 1000), 0

    def component(self) -> Component:
        """Consume drains at stop; the AMI link and the topic guardian just stop."""
        guardian = TopicGuardian(self.settings.kafka, self.topics.all())
        return Component(
            draining=[self.consume],
            background=[
                lambda stop: self.gateway.run(on_connected=self._connected),
                lambda stop: guardian.run(),
            ],
        )

    async def _connected(self) -> None:
        if self.gateway.connects > 1:
            self.metrics.reconnects.inc()

    async def consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # While Asterisk shuts down every Redirect would be refused: commands wait.
            if not self.gateway.ready:
                await wait_or_stop(stop, 0.1)
                continue
            try:
                batch = await self.reader.read(timeout_ms=100)
            except AcdError as exc:  # a broker restarting, a rebalance: wait and read again
                if not exc.retriable:
                    raise
                logger.warning("reading routing commands failed (%s); retrying", exc)
                await wait_or_stop(stop, 0.5)
                continue
            for message in batch:
                await self._execute_until_done(message, stop)
            try:
                await self.producer.flush()
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.error("Kafka did not take dispatch outcomes (%s); the offers expire instead", exc)
            await self.reader.commit(batch)

    async def _execute_until_done(self, message: Consumed, stop: asyncio.Event) -> None:
        """Execute one command; while Redis is down, wait for it (the command is not skipped)."""
        while True:
            try:
                await self._execute(message)
                return
            except BrokerUnavailableError as exc:
                # Only outcomes are produced here; an offer whose failure could not be reported
                # goes back in line at its dispatch deadline.
                logger.error("Kafka error while dispatching %s@%s: %s", message.part, message.offset, exc)
                return
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.warning("Redis unavailable while dispatching %s (%s); retrying", message.part, exc)
                if await wait_or_stop(stop, 0.5):
                    return

    async def _execute(self, message: Consumed) -> None:
        try:
            envelope = decode(message.value)
            if envelope.type == ROUTING_OFFER:
                await self.offer(parse_offer(envelope), claimant=self._claimant(message))
            elif envelope.type == ROUTING_PAUSE:
                await self.pause(parse_pause(envelope))
            elif envelope.type == ROUTING_OVERFLOW:
                await self.overflow(parse_overflow(envelope))
            elif envelope.type == ROUTING_RECORD:
                await self.record(parse_record(envelope))
            elif envelope.type == ROUTING_CALLBACK:
                await self.callback(parse_callback(envelope), claimant=self._claimant(message))
        except MalformedEventError as exc:
            logger.warning("dead-lettering command %s@%s: %s", message.part, message.offset, exc)
            await self.producer.send_raw(self.topics.dead_letters, message.value, message.key)

    def _claimant(self, message: Consumed) -> str:
        return claimant_of(self.source, os.getpid(), self._session, message)

    async def offer(self, command: OfferCommand, *, claimant: str = "") -> None:
        deadline = self.clock.now() + self.settings.routing.dispatch_timeout_s * self.clock.time_scale
        claim = await self.store.claim_offer(command.call_id, command.offer_id, deadline, claimant)
        if claim.status != "ok":
            self.metrics.stale.inc()
            logger.info(
                "offer %s for call %s withdrawn (%s): not sent",
                command.offer_id,
                command.call_id,
                claim.state,
                extra={"call_id": command.call_id, "agent_id": command.agent_id},
            )
            return
        action = {
            "Action": "Redirect",
            "Channel": command.channel,
            "Context": command.context,
            "Exten": command.exten,
            "Priority": "1",
        }
        try:
            await self.gateway.send_action(action)
        except AmiShuttingDownError as exc:
            # Refused without touching the caller: the offer goes back in line.
            self.metrics.actions.labels("Redirect", "error").inc()
            await self._report_failure(command, exc.ami_message, gone=False)
            return
        except AmiActionError as exc:
            self.metrics.actions.labels("Redirect", "error").inc()
            await self._report_failure(command, exc.ami_message)
            return
        except AmiConnectionError as exc:
            self.metrics.actions.labels("Redirect", "unknown").inc()
            logger.warning(
                "Redirect for offer %s unconfirmed (%s); dispatch timeout decides",
                command.offer_id,
                exc,
                extra={"call_id": command.call_id, "agent_id": command.agent_id},
            )
            return
        self.metrics.actions.labels("Redirect", "ok").inc()

    async def callback(self, command: CallbackCommand, *, claimant: str = "") -> None:
        """Call a caller back (router/callback.py): claimed like an offer, then an asynchronous
        Originate whose legs' events tell the routers how the attempt went. Refused: the
        attempt came to nothing (reported as a failed offer); unconfirmed: the claim's
        deadline puts the call back in line."""
        ids = {"call_id": command.call_id, "agent_id": command.agent_id}
        dial = self.settings.routing.callback
        window = claim_window_s(dial, self.settings.routing.dispatch_timeout_s)
        deadline = self.clock.now() + window * self.clock.time_scale
        claim = await self.store.claim_offer(command.call_id, command.offer_id, deadline, claimant)
        if claim.status != "ok":
            self.metrics.stale.inc()
            withdrawn = (command.offer_id, command.call_id, claim.state)
            logger.info("callback %s of call %s withdrawn (%s): not sent", *withdrawn, extra=ids)
            return
        try:
            # Only "Originate successfully queued": panoramisk would wait for the
            # OriginateResponse, which this events-off session never receives.
            await self.gateway.send_action(originate_action(command, dial), as_list=False)
        except AmiActionError as exc:
            self.metrics.actions.labels("Originate", "error").inc()
            await self._report_failure(command, exc.ami_message, gone=False)
            return
        except AmiConnectionError as exc:
            self.metrics.actions.labels("Originate", "unknown").inc()
            logger.warning(
                "Originate for callback %s unconfirmed (%s); its deadline decides", command.offer_id, exc, extra=ids
            )
            return
        self.metrics.actions.labels("Originate", "ok").inc()
        logger.info("calling back %s for call %s with %s", command.number, command.call_id, command.agent_id, extra=ids)

    async def _report_failure(
        self, command: OfferCommand | CallbackCommand, reason: str, *, gone: bool | None = None
    ) -> None:
        gone = channel_gone(reason) if gone is None else gone
        logger.info(
            "%s for call %s (offer %s) refused: %s",
            "Redirect" if isinstance(command, OfferCommand) else "Originate",
            command.call_id,
            command.offer_id,
            reason,
            extra={"call_id": command.call_id, "agent_id": command.agent_id},
        )
        self._seq += 1
        envelope = failure_envelope(
            command,
            reason,
            channel_gone=gone,
            at=self.clock.now(),
            source=self.source,
            sequence=(self._session, self._seq),
        )
        await self.producer.send_and_wait(self.topics.routing_outcomes, envelope)

    async def overflow(self, command: OverflowCommand) -> None:
        """Send an overflowed caller to its target; the call already left the ACD's books."""
        action = {
            "Action": "Redirect",
            "Channel": command.channel,
            "Context": command.context,
            "Exten": command.exten,
            "Priority": command.priority,
        }
        try:
            await self.gateway.send_action(action)
            self.metrics.actions.labels("Redirect", "ok").inc()
        except (AmiActionError, AmiConnectionError) as exc:
            self.metrics.actions.labels("Redirect", "error").inc()
            logger.warning(
                "overflow of call %s to %s,%s failed: %s",
                command.call_id,
                command.context,
                command.exten,
                exc,
            )

    async def record(self, command: RecordCommand) -> None:
        """Start recording a sampled call. A failure is logged and counted, never retried and
        never in routing's way: the call goes on unrecorded (its record still names the file)."""
        ids = {"call_id": command.call_id, "agent_id": command.agent_id}
        claim = await self.store.claim_recording(command.call_id, command.file)
        if claim.status != "ok":
            self.metrics.recordings.labels("skipped").inc()
            logger.info("recording of call %s not started (%s)", command.call_id, claim.state, extra=ids)
            return
        action = {
            "Action": "MixMonitor",
            "Channel": command.channel,
            "File": command.file,
            "Options": MIXMONITOR_OPTIONS,
        }
        try:
            await self.gateway.send_action(action)
        except AmiActionError as exc:
            self.metrics.actions.labels("MixMonitor", "error").inc()
            self._recording_refused(command, exc.ami_message)
            return
        except AmiConnectionError as exc:
            self.metrics.actions.labels("MixMonitor", "unknown").inc()
            self.metrics.recordings.labels("unconfirmed").inc()
            logger.warning("recording of call %s unconfirmed (%s)", command.call_id, exc, extra=ids)
            return
        self.metrics.actions.labels("MixMonitor", "ok").inc()
        self.metrics.recordings.labels("started").inc()
        logger.info("recording call %s to %s", command.call_id, command.file, extra=ids)

    def _recording_refused(self, command: RecordCommand, reason: str) -> None:
        result = recording_failure(reason)
        self.metrics.recordings.labels(result).inc()
        ids = {"call_id": command.call_id, "agent_id": command.agent_id}
        if result == "channel_gone":
            logger.info("call %s ended before its recording started: %s", command.call_id, reason, extra=ids)
            return
        hint = RECORDING_HINTS.get(result, "")
        logger.error(
            "MixMonitor of %s for call %s refused: %s%s", command.channel, command.call_id, reason, hint, extra=ids
        )

    async def pause(self, command: PauseCommand) -> None:
        action = {
            "Action": "QueuePause",
            # Without Queue, app_queue pauses the interface in every queue on the PBX.
            "Queue": self.settings.ami.roster_queue,
            "Interface": command.device,
            "Paused": "true",
            "Reason": command.reason,
        }
        try:
            await self.gateway.send_action(action)
            self.metrics.actions.labels("QueuePause", "ok").inc()
        except (AmiActionError, AmiConnectionError) as exc:
            self.metrics.actions.labels("QueuePause", "error").inc()
            logger.warning("could not pause %s in Asterisk: %s", command.device, exc)



async def open_dispatcher(ctx: ProcessContext) -> Component:
    """Redis, the topics, the producer, the consumer group, then AMI; ready while Redis
    answers, the broker answers, the group has given it its partitions, and Asterisk takes
    actions."""
    settings = ctx.settings
    metrics = DispatchMetrics(ctx.registry)
    topics = Topics(settings.kafka.topic_prefix)
    redis = await ctx.redis()
    await ensure_topics(settings.kafka, topics.all())
    producer = KafkaEnvelopeProducer(settings.kafka)
    await ctx.open(producer.start, producer.stop)
    reader = KafkaGroupReader(
        settings.kafka, [topics.routing_commands], f"{settings.kafka.consumer_group}-dispatch"
    )
    await ctx.open(reader.start, reader.stop)
    broker = ctx.kafka(producer, reader)
    ctx.link("kafka", lambda: reader.assigned and broker.ready)
    gateway = AmiGateway(settings.ami, events=False)
    ctx.stack.push_async_callback(gateway.close)
    ctx.link("ami", lambda: gateway.ready)
    metrics.connected.set_function(lambda: float(gateway.connected))
    dispatcher = Dispatcher(
        settings,
        gateway=gateway,
        store=RedisRoutingStore(redis, settings.site),
        reader=reader,
        producer=producer,
        clock=ctx.clock,
        metrics=metrics,
    )
    return dispatcher.component()


run_dispatcher = process_main("dispatch", open_dispatcher)
