"""Ingest: every AMI message becomes a versioned envelope on the AMI events topic.

Keyed by call (Linkedid) or agent device, so each call's and agent's events stay in order
on one partition. After every (re)connect, and after Kafka refused envelopes, it lists
every live channel (CoreShowChannels) and roster member (QueueStatus) and publishes the
listing plus a resync marker, so that routing workers learn what happened during a gap.
While Kafka is unreachable it writes nothing (not even what the client buffered) and holds
every envelope, to resend them in order once the broker is back with its topics.

Ingest runs in pairs: both processes hold an AMI connection, one is active (holds the
ingest lease, router/lease.py) and publishes, the other is a standby that keeps the last
``STANDBY_LOG_S`` seconds of AMI events. The standby takes the lease within the lease's TTL
and one renewal period of the active's death; it then starts a new session stamped with
the lease's fencing token, publishes what it kept of the gap (since the lease was last known
held, less ``GAP_MARGIN_S``: the calls that entered or ended in it, and every Dial's end;
``_gap_events``), and resynchronises (the AMI listing and a resync marker whose
``link_lost_at`` is the gap's start): a call that came and went in the gap is counted, one
that arrived or was answered in it is known before its later events, one still there is
listed. An active whose term lapsed (a renewal late on a starved machine) and that holds the
lease again with nobody between sends everything it kept instead, in the same session
(``_resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from panoramisk.message import Message

from router.ami.gateway import AmiGateway
from router.ami.translate import PBX_SHUTTING_DOWN, QUEUED_USER_EVENT, AmiFields, partition_key
from router.bus import KafkaEnvelopeProducer, KafkaLink, TopicGuardian, Topics, ensure_topics
from router.catchup import Marks, mark_of
from router.clock import Clock
from router.envelope import AMI_EVENT, AMI_RESYNC, Envelope, KeyChain
from router.errors import AcdError, AmiError, BrokerUnavailableError
from router.lease import INGEST_LEASE, Lease
from router.metrics import IngestMetrics
from router.settings import AcdSettings
from router.store import RedisLeaseStore
from workers.lifecycle import Component, ProcessContext, process_main
from workers.runtime import wait_or_stop

logger = logging.getLogger(__name__)

LIST_EVENTS_TO_SKIP = frozenset({"coreshowchannelscomplete", "queuestatuscomplete"})
RECENT_S = 30.0  # real seconds of sent envelopes kept, in case the broker loses them
MAX_HELD = 200_000  # AMI envelopes kept while Kafka refuses them (a few minutes of a big site)
BROKER_PROBE_S = 0.25  # how often ingest checks that Kafka answers (KafkaLink)
# A new active ingest republishes the calls that arrived or ended since the lease was last
# known held (router.lease: Lease.held_before_until), from this much earlier: what the old
# active had received but not yet handed to Kafka when it died.
GAP_MARGIN_S = 1.0
# What a standby keeps (a Redis outage deposes both: the gap is as long as the outage).
STANDBY_LOG_S = 120.0
STANDBY_LOG_MAX = 200_000
# Real seconds a resync marker waits for Kafka to answer for what was sent before it; past
# that its partition marks leave out what is still unanswered (router.catchup).
LISTING_ACK_WAIT_S = 10.0


@dataclass(frozen=True)
class _Snapshot:
    """A resync listing, queued behind the live events that arrived before it completed."""

    items: list[dict[str, Any]]
    live_call_ids: list[str]
    taken_at: float
    gap: dict[str, Any]  # link_lost_at, pbx_restart: what the routers need to close the rest


@dataclass(frozen=True)
class _Listing:
    """A snapshot's resync marker, queued once Kafka has answered for everything sent before
    it (router.catchup: the marker carries where those envelopes landed)."""

    live_call_ids: list[str]
    taken_at: float
    gap: dict[str, Any]
    items: int


@dataclass(frozen=True)
class _TookOver:
    """This ingest became the active one (its lease's fencing token), queued behind the
    events received before, so that the gap's events go out ahead of later ones."""

    token: int


@dataclass(frozen=True)
class _Logged:
    """An AMI event a standby received (it publishes it only if it takes over)."""

    received: float  # the lease's clock (monotonic)
    at: float  # simulated clock
    fields: dict[str, Any]


@dataclass(frozen=True)
class _LoggedResync:
    """A listing (or its marker) that came in a lapse of this ingest's term: published in
    its place among the events kept meanwhile if the term resumes (``_resume``)."""

    received: float  # the lease's clock (monotonic)
    item: _Snapshot | _Listing


@dataclass(frozen=True)
class _ProbedHangup:
    """A caller's Hangup, and the Ping asking whether Asterisk is shutting down behind it."""

    message: Message
    probe: asyncio.Future[bool]


def message_fields(message: Message) -> dict[str, Any]:
    """AMI headers as a JSON-able dict (repeated headers stay lists)."""
    return {key: value for key, value in message.items() if not (key == "content" and not value)}


class IngestWorker:
    """AMI -> Kafka for one Asterisk."""

    def __init__(
        self,
        settings: AcdSettings,
        producer: KafkaEnvelopeProducer,
        clock: Clock,
        metrics: IngestMetrics,
        lease: Lease,
    ) -> None:
        self.topics = Topics(settings.kafka.topic_prefix)
        self.kafka = settings.kafka
        self.broker = KafkaLink(settings.kafka, every_s=BROKER_PROBE_S)
        self.producer = producer
        self.clock = clock
        self.metrics = metrics
        self.source = f"ami://{settings.ami.host}:{settings.ami.port}"
        self.roster_queue = settings.ami.roster_queue
        # Envelopes carry (session, seq): the routers deduplicate on them, so that resending
        # what a restarted broker lost is harmless.
        self._session = int(time.time() * 1000)
        self._seq = 0
        self._chain = KeyChain()
        self._recent: deque[tuple[float, Envelope]] = deque()
        # Per partition, one past the last envelope Kafka acknowledged: a resync listing carries
        # them, and calls are closed only once the routing group applied that far (router.catchup).
        self._acked: Marks = {}
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._listings: set[asyncio.Task[None]] = set()
        self.lease = lease
        self._term = 0  # the fencing token of this ingest's term as the active one; 0: standby
        # The term it stood down from, and when (the lease's clock): a term that follows it
        # with nobody between (Lease.follows_own_term: the same token renewed, or taken again
        # after its key expired) resumes it, since nobody else published meanwhile.
        self._last_term = 0
        self._stood_down_at = -math.inf
        self._standby_log: deque[_Logged | _LoggedResync] = deque()
        self._inbox: asyncio.Queue[Message | _Snapshot | _Listing | _ProbedHangup | _TookOver] = asyncio.Queue()
        self._hung_up_since_resync: set[str] = set()
        self._held: deque[Envelope] = deque()
        self._blocked_keys: set[str] = set()
        # Kafka was unreachable: everything is held until a fresh producer sees the topics.
        self._fenced = False
        self._needs_resync = asyncio.Event()
        self._resync_at_once = False  # a take-over: no broker to let settle
        # The last moment Asterisk was seen before a gap (link lost or Event: Shutdown), and
        # whether the gap began with its shutdown: carried in the next resync envelope.
        self._link_lost_at: float | None = None
        self._pbx_restart = False
        self.gateway = AmiGateway(settings.ami, on_message=self._received, on_lost=self._link_lost)
        sentinel = f"{settings.kafka.topic_prefix}.ingest.sentinel.v1"
        self.guardian = TopicGuardian(settings.kafka, self.topics.all(), self._topics_lost, sentinel=sentinel)
        metrics.connected.set_function(lambda: float(self.gateway.connected))
        metrics.held.set_function(lambda: float(len(self._held)))
        metrics.active.set_function(lambda: float(self.active))

    def component(self) -> Component:
        """The pump publishes what is queued at stop; the rest just stops."""
        return Component(
            draining=[self._pump],
            background=[
                lambda stop: self.gateway.run(on_connected=self._resync),
                self._resync_when_needed,
                self._watch_broker,
                lambda stop: self.guardian.run(),
                lambda stop: self.lease.keep(self._lease_changed),
            ],
        )

    @property
    def active(self) -> bool:
        """This ingest publishes: it holds the lease, in the term it took over in."""
        return self._term > 0 and self.lease.token == self._term

    def _lease_changed(self, token: int) -> None:
        if token:
            self._inbox.put_nowait(_TookOver(token))
        elif self._term:
            logger.warning("ingest lease lost (fencing token %d): standing by", self._term)
            self._stand_down()

    def _stand_down_if_lapsed(self) -> None:
        """The term ran out before a renewal came back: a renewal begins a new one
        (Lease.keep), which publishes what this one keeps from now on."""
        if self._term:
            logger.warning("ingest lease lapsed (fencing token %d): standing by", self._term)
            self._stand_down()

    def _stand_down(self) -> None:
        self._last_term, self._term = self._term, 0
        self._stood_down_at = self.lease.now()

    @property
    def broker_ok(self) -> bool:
        """Readiness: Kafka takes envelopes (not fenced off after it became unreachable)."""
        return not self._fenced

    def _received(self, message: Message) -> None:
        """panoramisk callback: only enqueue (a caller's Hangup with its shutdown probe)."""
        if str(message.get("Event", "")).lower() == "shutdown":
            # The link closes next; calls not listed by the resync ended with this restart.
            self._link_lost_at = self._link_lost_at or self.clock.now()
            self._pbx_restart = True
        if _is_caller_hangup(message):
            probe = asyncio.ensure_future(self.gateway.probe_shutting_down())
            self._inbox.put_nowait(_ProbedHangup(message, probe))
        else:
            self._inbox.put_nowait(message)

    def _link_lost(self) -> None:
        if self._link_lost_at is None:
            self._link_lost_at = self.clock.now()

    def _topics_lost(self, topics: list[str]) -> None:
        """The broker lost topics (and with them events not yet consumed): send the recent
        ones again (the routers skip what they already applied), then list AMI again."""
        logger.error("Kafka lost topics %s: resending the last %ss of events, then resync", topics, RECENT_S)
        self._resend_recent()

    def _resend_recent(self) -> None:
        self._acked.clear()  # the broker may have lost them: its offsets count afresh
        self._held = _in_producer_order([*(envelope for _, envelope in self._recent), *self._held])
        self._blocked_keys.update(envelope.key for envelope in self._held)
        self._recent.clear()
        self._needs_resync.set()

    async def _pump(self, stop: asyncio.Event) -> None:
        """Publish inbox items in arrival order; on stop, publish what is queued, then return."""
        while not (stop.is_set() and self._inbox.empty()):
            try:
                item = await asyncio.wait_for(self._inbox.get(), 0.2)
            except TimeoutError:
                continue
            await self._take(item)
        await self.producer.flush()

    async def _take(self, item: Message | _Snapshot | _Listing | _ProbedHangup | _TookOver) -> None:
        if isinstance(item, _TookOver):
            await self._take_over(item)
        elif isinstance(item, _Snapshot | _Listing):
            if self.active:
                await self._publish_resync(item)
            elif self._term or self._last_term:
                self._keep_resync(item)
        else:
            self.metrics.events.inc()
            await self._handle(await self._fields_of(item), self.clock.now())

    async def _publish_resync(self, item: _Snapshot | _Listing) -> None:
        if isinstance(item, _Snapshot):
            await self._publish_snapshot(item)
        else:
            await self._publish_listing(item)

    def _keep_resync(self, item: _Snapshot | _Listing) -> None:
        """A listing (or its marker) in a lapse of this ingest's term (a renewal late on a
        loaded machine): published in its place if the term resumes (``_resume``); dropped,
        the calls that entered while AMI was away would stay unknown to the routers."""
        self._stand_down_if_lapsed()
        self._log(_LoggedResync(self.lease.now(), item))

    async def _handle(self, fields: dict[str, Any], at: float) -> None:
        """The active publishes; a standby keeps the last STANDBY_LOG_S seconds of events."""
        if self.active:
            await self._publish(fields, at)
            return
        self._stand_down_if_lapsed()
        self._log(_Logged(self.lease.now(), at, fields))

    def _log(self, entry: _Logged | _LoggedResync) -> None:
        self._standby_log.append(entry)
        while self._standby_log and (
            entry.received - self._standby_log[0].received > STANDBY_LOG_S
            or len(self._standby_log) > STANDBY_LOG_MAX
        ):
            self._standby_log.popleft()

    async def _take_over(self, took: _TookOver) -> None:
        """A new term: a new session stamped with the token, the gap's calls, a resync."""
        if self.lease.token != took.token:
            return  # lost again before its turn came
        # A term that ran out with nothing received meanwhile was never stood down from.
        self._stand_down_if_lapsed()
        if self._last_term and self.lease.follows_own_term:
            await self._resume(took.token)
            return
        logger.warning("ingest active now (fencing token %d)", took.token)
        self._term = took.token
        # Sessions order envelopes across terms (router.sequencing, the stores' watermarks).
        self._session = max(int(time.time() * 1000), self._session + 1)
        self._seq, self._chain = 0, KeyChain()
        self._recent.clear()
        self._held.clear()
        self._blocked_keys.clear()
        self.metrics.takeovers.inc()
        since = self._gap_since()
        # Not the listings kept in a lapse: a new term lists anyway.
        replay = _gap_events([e for e in self._standby_log if isinstance(e, _Logged) and e.received >= since])
        self._standby_log.clear()
        for logged in replay:
            await self._publish(logged.fields, logged.at)
        self.metrics.replayed.inc(len(replay))
        if since > -math.inf:
            gap_start_at = self.clock.now() - (self.lease.now() - since) * self.clock.time_scale
            self._link_lost_at = min(self._link_lost_at or gap_start_at, gap_start_at)
        self._resync_at_once = True
        self._needs_resync.set()

    def _gap_since(self) -> float:
        """From when (the lease's clock) a new term publishes what it kept: the margin before
        the lease was last known held, and never later than this process's own stand-down.
        An ingest that lapsed and then took a new token itself (its key had expired) kept
        events that nobody published; a renewal it had no time to act on moved the lease's
        "last known held" past them, and the calls that entered then were never heard of
        (the race test on a starved machine, 2026-11-30). Redis now says when nobody else
        held the lease between (``_resume`` then sends everything kept); this still holds
        when a failover lost that record."""
        since = self.lease.held_before_until - GAP_MARGIN_S
        return min(since, self._stood_down_at) if self._last_term else since

    async def _resume(self, token: int) -> None:
        """The lease lapsed (a renewal came back late) and this ingest holds it again, with
        nobody else between: the same token renewed, or its key expired and it took a new
        one itself (``Lease.follows_own_term``). Nobody published meanwhile, so everything
        kept since standing down goes out, in order, in the same session: not only the calls
        that entered or ended (an answer in the lapse must reach the routers before the
        caller's hang-up that follows it; a hold too, which a new term could not replay),
        and an AMI listing taken meanwhile too, in its place."""
        self._term = token
        kept = [e for e in self._standby_log if e.received >= self._stood_down_at]
        self._standby_log.clear()
        for entry in kept:
            if isinstance(entry, _LoggedResync):
                await self._publish_resync(entry.item)
            else:
                await self._publish(entry.fields, entry.at)
        events = sum(isinstance(entry, _Logged) for entry in kept)
        self.metrics.replayed.inc(events)
        logger.warning("ingest active again (fencing token %d): %d events kept meanwhile sent", token, events)

    async def _fields_of(self, item: Message | _ProbedHangup) -> dict[str, Any]:
        if isinstance(item, _ProbedHangup):
            fields = message_fields(item.message)
            # ``core restart now`` hangs every caller up after refusing actions: this Hangup
            # is the PBX cutting the call off, not the caller abandoning.
            if await item.probe:
                fields[PBX_SHUTTING_DOWN] = "1"
            return fields
        return message_fields(item)

    def _envelope(self, fields: dict[str, Any], at: float, *, kind: str = AMI_EVENT) -> Envelope:
        self._seq += 1
        key = partition_key(fields) if kind == AMI_EVENT else "ami:resync"
        return Envelope(
            type=kind,
            id=f"{self._session}-{self._seq}",
            session=self._session,
            seq=self._seq,
            prev=self._chain.link(key, self._seq),
            fence=self._term or None,
            source=self.source,
            ts=at,
            key=key,
            data=fields,
        )

    async def _publish(self, fields: dict[str, Any], at: float, *, kind: str = AMI_EVENT) -> None:
        if kind == AMI_EVENT:
            self._remember_hangup(fields)
        envelope = self._envelope(fields, at, kind=kind)
        if self._fenced or envelope.key in self._blocked_keys:
            self._hold(envelope)  # Kafka unreachable, or behind an earlier one of its key that failed
            return
        try:
            future = await self.producer.send(self.topics.ami_events, envelope)
        except AcdError as exc:  # no buffer space or no topic metadata in time
            if not exc.retriable:
                raise
            self._refused(envelope, exc)
            return
        future.add_done_callback(lambda f: self._delivered(f, envelope))
        self._in_flight.add(future)
        self._remember_recent(envelope)

    def _remember_recent(self, envelope: Envelope) -> None:
        """Keep the last RECENT_S seconds of envelopes: Kafka acknowledged them, but a broker
        that restarts empty loses what the routers had not consumed yet."""
        now = time.monotonic()
        self._recent.append((now, envelope))
        while self._recent and now - self._recent[0][0] > RECENT_S:
            self._recent.popleft()

    def _remember_hangup(self, fields: dict[str, Any]) -> None:
        ami = AmiFields(fields)
        if ami.get("Event").lower() == "hangup":
            self._hung_up_since_resync.add(ami.get("Uniqueid"))

    def _delivered(self, future: asyncio.Future[Any], envelope: Envelope) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            self._refused(envelope, "cancelled")
        elif future.exception() is not None:
            self._refused(envelope, future.exception())
        else:
            self._acknowledged(future.result())
            self.metrics.produced.inc()

    def _acknowledged(self, metadata: Any) -> None:
        mark_of(self._acked, metadata.topic, metadata.partition, metadata.offset)

    def _refused(self, envelope: Envelope, reason: object) -> None:
        self.metrics.produce_errors.inc()
        if not self._needs_resync.is_set():
            logger.error("Kafka did not take an AMI envelope (%s): will resend, then resync", reason)
        self._hold(envelope)
        if self._recent:
            # A refusal may mean the broker restarted and lost what it had acknowledged.
            self._resend_recent()
        self._needs_resync.set()

    def _hold(self, envelope: Envelope) -> None:
        """Keep an envelope Kafka did not take, and every later one of the same key, in order."""
        self._blocked_keys.add(envelope.key)
        if len(self._held) >= MAX_HELD:
            self._held.popleft()  # the resync that follows covers what is dropped here
            logger.error("more than %d AMI envelopes waiting for Kafka: dropping the oldest", MAX_HELD)
        self._held.append(envelope)

    async def _watch_broker(self, stop: asyncio.Event) -> None:
        """Fence ingest off Kafka as soon as the broker does not answer: refuses connections
        (stopped) or leaves a request unanswered for ``kafka.probe_timeout_s`` (hung)."""
        try:
            while not await wait_or_stop(stop, BROKER_PROBE_S):
                if not self._fenced and not await self.broker.check():
                    await self._fence()
        finally:
            self.broker.close()

    async def _fence(self) -> None:
        """Hold every envelope, those aiokafka still buffers included, until a fresh producer
        finds the topics again: a broker that comes back empty must not receive a write
        before its topics are recreated (see ``KafkaEnvelopeProducer.abandon``)."""
        logger.error("Kafka unreachable: holding AMI events until it is back with its topics")
        self._fenced = True
        self._resend_recent()  # it may come back empty, without what it had acknowledged
        await self.producer.abandon(BrokerUnavailableError("Kafka became unreachable before it acknowledged"))

    async def _producer_ready(self) -> bool:
        if self._fenced:
            # Not before the broker answers: a client connecting into a link that still hangs
            # would wait out its request timeout on a connection that stays dead.
            if not await self.broker.check() or not await self.producer.restart():
                return False
            # Before the first question about the topics: a metadata request for a missing
            # topic makes the broker auto-create it with its default partition count.
            try:
                await ensure_topics(self.kafka, self.guardian.topics)
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.warning("Kafka topics not checked yet (%s); retrying", exc)
                return False
        # A recreated topic not complete yet: keys would land on other partitions.
        return await self.producer.knows_partitions(self.topics.ami_events)

    async def _resend_held(self) -> bool:
        """Send what Kafka refused, in producer order and in bulk; True once nothing is held."""
        if (self._held or self._fenced) and not await self._producer_ready():
            return False
        if not self.active and self._held:
            # A standby's (kept from its last term as the active one): sent now they would
            # land after its successor's and be dropped as a deposed ingest's; the successor
            # published the gap itself.
            logger.info("standing by: %d envelopes of its last term not sent again", len(self._held))
            self._held.clear()
        while self._held:
            # Taken out whole: while it is in flight, newer envelopes of its keys are held
            # behind it, and a broker loss noticed meanwhile replaces ``_held`` altogether.
            batch, self._held = list(_in_producer_order(self._held)), deque()
            results = await self._send_all(batch)
            failed = []
            for envelope, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    failed.append(envelope)
                else:
                    self._acknowledged(result)
                    self._remember_recent(envelope)  # a second broker loss must resend it too
            self.metrics.produced.inc(len(batch) - len(failed))
            if failed:
                self._held = _in_producer_order([*failed, *self._held])
                logger.warning(
                    "Kafka still refuses %d of %d held AMI envelopes; retrying", len(failed), len(batch)
                )
                return False
        if not self.producer.started:
            return False  # fenced again while the resend was in flight
        self._blocked_keys.clear()
        self._fenced = False
        return True

    async def _send_all(self, batch: list[Envelope]) -> list[object]:
        """Each envelope's delivery: the broker's acknowledgement, or why Kafka did not take
        it (a send refused at once, e.g. no topic metadata within the request timeout, fails
        it and every later one: they are resent in order)."""
        futures: list[asyncio.Future[Any]] = []
        refused: AcdError | None = None
        for envelope in batch:
            try:
                futures.append(await self.producer.send(self.topics.ami_events, envelope))
            except AcdError as exc:
                if not exc.retriable:
                    raise
                refused = exc
                break
        results: list[object] = await asyncio.gather(*futures, return_exceptions=True)
        return results + [refused] * (len(batch) - len(futures))

    async def _resync(self) -> None:
        """After (re)connect: list live channels and roster members, queue them as a snapshot."""
        if self.gateway.connects > 1:
            self.metrics.reconnects.inc()
        self._hung_up_since_resync.clear()
        taken_at = self.clock.now()
        gap = {"link_lost_at": self._link_lost_at, "pbx_restart": self._pbx_restart}
        try:
            channels = await self.gateway.send_action({"Action": "CoreShowChannels"})
            # Without Queue, QueueStatus lists every queue on the PBX.
            members = await self.gateway.send_action({"Action": "QueueStatus", "Queue": self.roster_queue})
        except AmiError as exc:
            logger.error("resync failed (%s); it will be retried", exc)
            self._needs_resync.set()
            return
        items = [message_fields(m) for m in _list_events(channels) + _list_events(members)]
        live = [
            AmiFields(i).get("Uniqueid")
            for i in items
            if AmiFields(i).get("Event").lower() == "coreshowchannel"
        ]
        self._inbox.put_nowait(_Snapshot(items, live, taken_at, gap))
        self._link_lost_at, self._pbx_restart = None, False

    async def _publish_snapshot(self, snapshot: _Snapshot) -> None:
        for fields in snapshot.items:
            # A caller that hung up while the listing was being read must not come back.
            if AmiFields(fields).get("Uniqueid") in self._hung_up_since_resync:
                continue
            fields["Resync"] = "1"
            await self._publish(fields, snapshot.taken_at)
        live = sorted(set(snapshot.live_call_ids) - self._hung_up_since_resync)
        listing = _Listing(live, snapshot.taken_at, snapshot.gap, len(snapshot.items))
        # Not waited for here: the events that keep coming must not wait on Kafka's answers.
        task = asyncio.create_task(self._list_once_delivered(listing, set(self._in_flight)))
        self._listings.add(task)
        task.add_done_callback(self._listings.discard)

    async def _list_once_delivered(self, listing: _Listing, sent: set[asyncio.Future[Any]]) -> None:
        """Queue the marker once Kafka has answered for everything sent before the listing
        (each envelope's callback has run: acknowledged, or held to be sent again)."""
        _, pending = await asyncio.wait(sent, timeout=LISTING_ACK_WAIT_S) if sent else (set(), set())
        if pending:
            logger.warning(
                "resync listing: Kafka has not answered for %d envelopes in %ss; its marks leave them out",
                len(pending),
                LISTING_ACK_WAIT_S,
            )
        self._inbox.put_nowait(listing)

    async def _publish_listing(self, listing: _Listing) -> None:
        if self._held:
            # Kafka refused some of what came before: they go again, then another listing.
            logger.warning("resync listing put off: %d AMI envelopes to send again first", len(self._held))
            self._needs_resync.set()
            return
        marker = {"live_call_ids": listing.live_call_ids, **listing.gap, "marks": dict(self._acked)}
        await self._publish(marker, listing.taken_at, kind=AMI_RESYNC)
        self.metrics.resyncs.inc()
        logger.info("resync published: %d channels live, %d listed items", len(listing.live_call_ids), listing.items)

    async def _resync_when_needed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._needs_resync.wait()
            self._needs_resync.clear()
            while not self.gateway.connected:
                if await wait_or_stop(stop, 0.5):
                    return
            if not self._resync_at_once:
                await wait_or_stop(stop, 1.0)  # let a recovering broker settle
            self._resync_at_once = False
            # First what happened (late, but in order per call and agent), then the listing.
            while not await self._resend_held():
                if await wait_or_stop(stop, 1.0):
                    return
            await self._resync()


def _is_caller_hangup(message: Message) -> bool:
    return _caller_hung_up(message_fields(message))


def _caller_hung_up(data: dict[str, Any]) -> bool:
    fields = AmiFields(data)
    uniqueid = fields.get("Uniqueid")
    return fields.get("Event").lower() == "hangup" and uniqueid == (fields.get("Linkedid") or uniqueid)


def _gap_events(logged: list[_Logged]) -> list[_Logged]:
    """What a new active publishes of the gap, in order: every event of each call that entered
    a queue or whose caller hung up in it (the routers may know nothing of such a call, and a
    call that came and went is in no resync listing), and every Dial's end (an answer in the
    gap must reach the routers before the hang-up that follows it live).

    Not the rest: what the dead active had sent already comes again, and the stores judge an
    event by the state they find. A Dial's end is safe so (it names its agent, and a call is
    never offered twice to an agent that did not take it), but a hold starting or stopping is
    read against the offer out *now*: replayed, an old offer's hold could decline a newer one."""
    wanted = {partition_key(e.fields) for e in logged if _caller_hung_up(e.fields) or _queued(e.fields)}
    return [e for e in logged if partition_key(e.fields) in wanted or _dial_ended(e.fields)]


def _queued(data: dict[str, Any]) -> bool:
    fields = AmiFields(data)
    return fields.get("Event").lower() == "userevent" and fields.get("UserEvent").lower() == QUEUED_USER_EVENT


def _dial_ended(data: dict[str, Any]) -> bool:
    return AmiFields(data).get("Event").lower() == "dialend"


def _in_producer_order(envelopes: Iterable[Envelope]) -> deque[Envelope]:
    """By seq, each once (a resend may meet the same envelope twice)."""
    by_seq = {envelope.seq or 0: envelope for envelope in envelopes}
    return deque(by_seq[seq] for seq in sorted(by_seq))


def _list_events(response: Any) -> list[Message]:
    messages: Iterable[Message] = response if isinstance(response, list) else [response]
    return [
        m for m in messages if "event" in m and str(m.get("Event", "")).lower() not in LIST_EVENTS_TO_SKIP
    ]



async def open_ingest(ctx: ProcessContext) -> Component:
    """The topics, Redis (the lease), the producer, then AMI; ready while Kafka takes
    envelopes, Redis answers and Asterisk is logged in and not shutting down, as the active
    one or as the standby (``acd_ingest_active`` says which)."""
    settings = ctx.settings
    metrics = IngestMetrics(ctx.registry)
    await ensure_topics(settings.kafka, Topics(settings.kafka.topic_prefix).all())
    redis = await ctx.redis()
    producer = KafkaEnvelopeProducer(settings.kafka)
    await ctx.open(producer.start, producer.stop)
    owner = f"ingest-{socket.gethostname()}-{os.getpid()}"
    lease = Lease(RedisLeaseStore(redis, settings.site), INGEST_LEASE, owner)
    # Given up after the pump has published what was queued (a clean stop hands over at once).
    ctx.stack.push_async_callback(lease.release)
    worker = IngestWorker(settings, producer, ctx.clock, metrics, lease)
    ctx.stack.push_async_callback(_close_quietly, worker.gateway)
    ctx.link("kafka", lambda: worker.broker_ok)
    ctx.link("ami", lambda: worker.gateway.ready)
    return worker.component()


async def _close_quietly(gateway: AmiGateway) -> None:
    with contextlib.suppress(Exception):
        await gateway.close()


run_ingest = process_main("ingest", open_ingest)
