"""Prometheus metrics, built per process on an injected registry.

Counters and histograms are per process (sum them in PromQL across workers); global state
gauges (calls waiting, agents by state, queue targets, staffing) come from ``StateGauges``,
which exactly one collector process serves, so that N workers do not multiply them. Wait
and talk times are in simulated seconds (router.clock); routing-loop latencies in real
seconds. No caller numbers or other personal data ever become label values; queue names
come from config, states from fixed enums. docs/metrics.md describes every metric.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.utils import floatToGoString

WAIT_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
TALK_BUCKETS = (30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
WRAPUP_BUCKETS = (5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def wait_buckets(thresholds: Iterable[float]) -> tuple[float, ...]:
    """Standard wait buckets plus every configured service-level threshold, so that PromQL
    reads "answered within T" straight off a bucket instead of interpolating."""
    return tuple(sorted(set(WAIT_BUCKETS) | {float(t) for t in thresholds}))


def bucket_label(bound: float) -> str:
    """The ``le`` label value the client library writes for a bucket bound (20 -> "20.0"),
    so that a gauge can name the bucket at a queue's threshold for a PromQL join (under
    another label name: only histograms may carry ``le``)."""
    # prometheus_client leaves this helper unannotated; str() pins the type it returns.
    return str(floatToGoString(float(bound)))  # type: ignore[no-untyped-call]


def keep_labelled_children(metrics: object) -> None:
    """Make ``labels(...)`` of every labelled metric among ``metrics``' attributes a lookup of
    the child made the first time.

    A routing worker asks for the same few label values (topics, queues, command kinds) on
    every event; prometheus_client checks them and takes a lock each time, about 3 % of a
    saturated worker (docs/performance.md). Only for metrics whose children are never removed
    (``remove``, ``clear``): a removed child would stay cached and count where nobody reads."""
    for metric in vars(metrics).values():
        if isinstance(metric, Counter | Histogram):  # one without labels still refuses labels()
            metric.labels = functools.cache(metric.labels)  # type: ignore[method-assign,assignment]


class RoutingMetrics:
    """What one routing worker did."""

    def __init__(
        self,
        registry: CollectorRegistry,
        sl_thresholds: Iterable[float] = (20.0,),
        queues: Iterable[str] = (),
    ) -> None:
        buckets = wait_buckets(sl_thresholds)
        self.events_consumed = Counter(
            "acd_events_consumed_total", "Envelopes read from Kafka", ["topic"], registry=registry
        )
        self.events_malformed = Counter(
            "acd_events_malformed_total",
            "Messages that were not valid envelopes (sent to the dead-letter topic)",
            ["topic"],
            registry=registry,
        )
        self.replication_barrier = Counter(
            "acd_replication_barrier_total",
            "Batches asked whether a Redis replica has their writes before their offsets are committed "
            "(with Sentinel): replicated, no_replica, not_yet, alone (offsets wait), primary_changed (read again)",
            ["result"],
            registry=registry,
        )
        self.events_reordered = Counter(
            "acd_events_reordered_total",
            "AMI envelopes that arrived before an earlier one of their call or agent (after a broker "
            "lost events): held_back, released (in order), released_after_wait, reread_after_rebalance",
            ["result"],
            registry=registry,
        )
        self.events_fenced = Counter(
            "acd_events_fenced_total",
            "AMI envelopes dropped as written by a deposed active ingest after its successor took over",
            registry=registry,
        )
        self.event_errors = Counter(
            "acd_event_errors_total",
            "Envelopes whose handling raised an error (sent to the dead-letter topic)",
            ["type"],
            registry=registry,
        )
        self.decisions = Counter(
            "acd_routing_decisions_total",
            "Offers made (agent reserved, command produced)",
            ["queue", "trigger"],
            registry=registry,
        )
        self.conflicts = Counter(
            "acd_routing_conflicts_total",
            "Reservations lost to another worker (retried)",
            registry=registry,
        )
        self.decision_latency = Histogram(
            "acd_routing_decision_latency_seconds",
            "Real time from event consumed to routing command produced (handed to the Kafka producer)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_age = Histogram(
            "acd_event_age_seconds",
            "Real time from the producer seeing an event (envelope ts) to a routing worker consuming it",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.command_acked_latency = Histogram(
            "acd_routing_command_acked_seconds",
            "Real time from event consumed to routing command acknowledged by Kafka (acks=all)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commands = Counter(
            "acd_routing_commands_total", "Commands produced", ["type"], registry=registry
        )
        self.offered = Counter(
            "acd_calls_offered_total", "Calls that entered a queue", ["queue"], registry=registry
        )
        self.answered = Counter(
            "acd_calls_answered_total", "Calls answered by an agent", ["queue"], registry=registry
        )
        self.qa_sampled = Counter(
            "acd_qa_sampled_total",
            "Answered calls sampled for quality review, by type: random (the call's draw) or minimum "
            "(its agent's daily minimum topped up)",
            ["queue", "type"],
            registry=registry,
        )
        self.abandoned = Counter(
            "acd_calls_abandoned_total", "Callers who hung up while queued", ["queue"], registry=registry
        )
        self.transferred = Counter(
            "acd_calls_transferred_total",
            "Answered calls their agent transferred (blind or attended; out, or back into a queue)",
            ["queue"],
            registry=registry,
        )
        self.overflowed = Counter(
            "acd_calls_overflowed_total",
            "Calls sent to another queue or target",
            ["queue"],
            registry=registry,
        )
        self.closed = Counter(
            "acd_calls_closed_total",
            "Callers who arrived while their queue was closed (business hours): sent to its closed "
            "target, never offered, not in offered, service level or abandonment",
            ["queue"],
            registry=registry,
        )
        self.declined = Counter(
            "acd_offers_declined_total",
            "Offers the agent did not take (no answer, busy)",
            ["queue"],
            registry=registry,
        )
        self.answer_wait = Histogram(
            "acd_call_answer_wait_seconds",
            "Queue wait of answered calls (simulated seconds)",
            ["queue"],
            buckets=buckets,
            registry=registry,
        )
        self.abandon_wait = Histogram(
            "acd_call_abandon_wait_seconds",
            "Queue wait of abandoned calls (simulated seconds)",
            ["queue"],
            buckets=buckets,
            registry=registry,
        )
        self.talk = Histogram(
            "acd_call_talk_seconds",
            "Talk time of completed calls (simulated seconds)",
            ["queue"],
            buckets=TALK_BUCKETS,
            registry=registry,
        )
        self.wrapup = Histogram(
            "acd_call_wrapup_seconds",
            "After-call work per completed call (simulated seconds)",
            ["queue"],
            buckets=WRAPUP_BUCKETS,
            registry=registry,
        )
        self.agent_handling = Counter(
            "acd_agent_handling_seconds_total",
            "Agent time spent handling calls: talk + wrap-up (simulated seconds)",
            registry=registry,
        )
        self.agent_available = Counter(
            "acd_agent_available_seconds_total",
            "Agent time spent available with no call (simulated seconds)",
            registry=registry,
        )
        self.calls_closed_by_resync = Counter(
            "acd_calls_closed_by_resync_total",
            "Open calls closed because a resync after an AMI reconnect no longer listed them",
            registry=registry,
        )
        self.ended_by_pbx_restart = Counter(
            "acd_calls_ended_by_pbx_restart_total",
            "Queued callers an Asterisk restart or shutdown cut off (not abandons, not in service level)",
            ["queue"],
            registry=registry,
        )
        # Callbacks that keep the caller's place (router/callback.py, docs/metrics.md).
        self.callbacks_requested = Counter(
            "acd_callbacks_requested_total",
            "Callers who asked to be called back (and kept their place in line)",
            ["queue"],
            registry=registry,
        )
        self.callback_attempts = Counter(
            "acd_callback_attempts_total",
            "Callback attempts by result: answered (both legs), unanswered (the caller's leg), "
            "rejected (the agent's leg: back in line at once, not counted against the attempts)",
            ["queue", "result"],
            registry=registry,
        )
        self.callbacks_failed = Counter(
            "acd_callbacks_failed_total",
            "Callbacks that ended callback_failed (the caller did not answer the last attempt)",
            ["queue"],
            registry=registry,
        )
        self.timer_runs = Counter(
            "acd_timer_runs_total", "Timer ticks this worker ran while holding the lease", registry=registry
        )
        self.consumer_lag = Gauge(
            "acd_kafka_consumer_lag_messages",
            "Messages in this worker's assigned partitions not yet read (highwater - position)",
            ["topic"],
            registry=registry,
        )
        self.declare_queues(queues)

    def declare_queues(self, queues: Iterable[str]) -> None:
        """Create every per-queue series at zero, so that sums and ratios across counters
        (answered + abandoned, ...) exist before a queue's first call of each kind."""
        per_queue = (
            self.offered,
            self.answered,
            self.abandoned,
            self.overflowed,
            self.transferred,
            self.declined,
            self.answer_wait,
            self.abandon_wait,
            self.talk,
            self.wrapup,
            self.ended_by_pbx_restart,
            self.closed,
            self.callbacks_requested,
            self.callbacks_failed,
        )
        keep_labelled_children(self)
        for queue in queues:
            for metric in per_queue:
                metric.labels(queue)


class RelayMetrics:
    """What one routing worker's record relay did (docs/records.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "acd_records_published_total",
            "Records the relay produced to Kafka and the broker acknowledged (call, agent_state)",
            ["type"],
            registry=registry,
        )
        self.claimed = Counter(
            "acd_records_claimed_total",
            "Outbox entries taken over from a relay that read them and never acknowledged them",
            registry=registry,
        )
        self.malformed = Counter(
            "acd_records_malformed_total",
            "Outbox entries that were no record (sent to the dead-letter topic)",
            registry=registry,
        )
        self.backlog = Gauge(
            "acd_records_outbox_backlog",
            "Records in the site's outbox not yet published (the same site-wide figure from every worker)",
            registry=registry,
        )
        keep_labelled_children(self)
        for kind in ("call", "agent_state"):
            self.published.labels(kind)


class IngestMetrics:
    """The AMI link and what it delivered to Kafka."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.recordings = Counter(
            "acd_dispatch_recordings_total",
            "Recordings of sampled calls asked of Asterisk (MixMonitor), by result: started, "
            "channel_gone, permission_denied, not_available (app_mixmonitor not loaded), refused, "
            "unconfirmed (AMI link lost), skipped (a redelivered command, or the call already over)",
            ["result"],
            registry=registry,
        )
        self.connected = Gauge("acd_ami_connected", "1 while logged in to AMI", registry=registry)
        self.reconnects = Counter(
            "acd_ami_reconnects_total", "AMI connections re-established after a loss", registry=registry
        )
        self.events = Counter("acd_ami_events_total", "AMI events received", registry=registry)
        self.produced = Counter(
            "acd_ami_events_produced_total", "AMI envelopes acknowledged by Kafka", registry=registry
        )
        self.produce_errors = Counter(
            "acd_ami_produce_errors_total", "AMI envelopes Kafka did not take", registry=registry
        )
        self.resyncs = Counter(
            "acd_ami_resyncs_total", "Resynchronisations after (re)connect", registry=registry
        )
        self.active = Gauge(
            "acd_ingest_active",
            "1 while this ingest is the active one of its pair (holds the lease), 0 while standby",
            registry=registry,
        )
        self.takeovers = Counter(
            "acd_ingest_takeovers_total",
            "Times this ingest became the active one (took the lease; its first start included)",
            registry=registry,
        )
        self.replayed = Counter(
            "acd_ingest_gap_replayed_total",
            "AMI events of calls that arrived or ended during a take-over's gap, published by the new active",
            registry=registry,
        )
        self.held = Gauge(
            "acd_ami_events_held",
            "AMI envelopes held back while Kafka is unreachable or refusing, to be resent in order",
            registry=registry,
        )


class DispatchMetrics:
    """Routing commands turned into AMI actions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "acd_dispatch_actions_total", "AMI actions sent", ["action", "result"], registry=registry
        )
        self.stale = Counter(
            "acd_dispatch_stale_commands_total",
            "Commands skipped because their offer was withdrawn meanwhile",
            registry=registry,
        )
        self.recordings = Counter(
            "acd_dispatch_recordings_total",
            "Recordings of sampled calls asked of Asterisk (MixMonitor), by result: started, "
            "channel_gone, permission_denied, not_available (app_mixmonitor not loaded), refused, "
            "unconfirmed (AMI link lost), skipped (a redelivered command, or the call already over)",
            ["result"],
            registry=registry,
        )
        self.connected = Gauge("acd_ami_connected", "1 while logged in to AMI", registry=registry)
        self.reconnects = Counter(
            "acd_ami_reconnects_total", "AMI connections re-established after a loss", registry=registry
        )


class StateGauges:
    """Site-wide state read from Redis by the one collector that holds the lease."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.waiting = Gauge("acd_calls_waiting", "Calls waiting in queue now", ["queue"], registry=registry)
        self.callbacks_waiting = Gauge(
            "acd_callbacks_waiting",
            "Calls waiting to be called back now (in line or between attempts; also in acd_calls_waiting)",
            ["queue"],
            registry=registry,
        )
        self.oldest_wait = Gauge(
            "acd_oldest_wait_seconds",
            "Wait of the longest-waiting call now (simulated s)",
            ["queue"],
            registry=registry,
        )
        self.agents = Gauge("acd_agents", "Agents by state", ["state"], registry=registry)
        self.queue_agents = Gauge(
            "acd_queue_agents",
            "Agents meeting the queue's base requirements, by state (an agent counts in every queue it qualifies for)",
            ["queue", "state"],
            registry=registry,
        )
        self.sl_target = Gauge(
            "acd_queue_service_level_target_ratio",
            "Service-level target of the queue: fraction of calls to answer within the threshold",
            ["queue"],
            registry=registry,
        )
        self.sl_threshold = Gauge(
            "acd_queue_service_level_threshold_seconds",
            "Service-level threshold of the queue; label bucket is the le of the wait-histogram bucket at it",
            ["queue", "bucket"],
            registry=registry,
        )
        self.sl_formula = Gauge(
            "acd_queue_service_level_formula_info",
            "1 for the service-level formula the queue is measured by",
            ["queue", "formula"],
            registry=registry,
        )
        self.queue_open = Gauge(
            "acd_queue_open",
            "1 while the queue takes calls, 0 while it is closed (business hours or a supervisor's override)",
            ["queue"],
            registry=registry,
        )
        self.staffing = StaffingGauges(registry)

    def all(self) -> tuple[Gauge, ...]:
        return (
            self.waiting,
            self.queue_open,
            self.callbacks_waiting,
            self.oldest_wait,
            self.agents,
            self.queue_agents,
            self.sl_target,
            self.sl_threshold,
            self.sl_formula,
            *self.staffing.all(),
        )


class StaffingGauges:
    """Live staffing advice per queue (Erlang C, or Erlang A where the queue configures a
    patience), beside the agents staffed (collector only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.agents_needed = Gauge(
            "acd_staffing_agents_needed",
            "Agents needed now to meet the queue's SL target at the observed arrival rate and AHT "
            "(Erlang C, or Erlang A with the queue's staffing.patience_s)",
            ["queue"],
            registry=registry,
        )
        self.agents_staffed = Gauge(
            "acd_staffing_agents_staffed",
            "Agents logged in and not paused who meet the queue's base requirements",
            ["queue"],
            registry=registry,
        )
        self.arrival_rate = Gauge(
            "acd_staffing_arrival_rate_per_second",
            "Calls entering the queue per (simulated) second over the staffing window",
            ["queue"],
            registry=registry,
        )
        self.handle_time = Gauge(
            "acd_staffing_handle_time_seconds",
            "Average handle time (talk + wrap-up) over the staffing window (simulated s)",
            ["queue"],
            registry=registry,
        )
        self.traffic = Gauge(
            "acd_staffing_traffic_erlangs",
            "Offered traffic: arrival rate x average handle time",
            ["queue"],
            registry=registry,
        )

        self.abandon_rate = Gauge(
            "acd_staffing_abandon_ratio",
            "Erlang A: share of callers expected to give up with the agents needed (queues with a patience)",
            ["queue"],
            registry=registry,
        )
        self.model = Gauge(
            "acd_staffing_model_info",
            "The queueing model of the queue's staffing advice: erlang-c or erlang-a",
            ["queue", "model"],
            registry=registry,
        )

    def all(self) -> tuple[Gauge, ...]:
        return (
            self.agents_needed,
            self.agents_staffed,
            self.arrival_rate,
            self.handle_time,
            self.traffic,
            self.abandon_rate,
            self.model,
        )
