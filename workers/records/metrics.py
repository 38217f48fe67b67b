"""What `acd record` exports (docs/metrics.md, Recorder)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KINDS = ("call", "agent_state")


class RecorderMetrics:
    """Records written to PostgreSQL, batches, retries, malformed records, the link."""

    def __init__(self, registry: CollectorRegistry, topics: tuple[str, ...] = ()) -> None:
        self.written = Counter(
            "acd_recorder_records_written_total",
            "Rows inserted or updated in PostgreSQL (a call row is updated by a higher revision)",
            ["kind"],
            registry=registry,
        )
        self.unchanged = Counter(
            "acd_recorder_records_unchanged_total",
            "Records that changed nothing: already written (redelivered, republished) or an older revision",
            ["kind"],
            registry=registry,
        )
        self.malformed = Counter(
            "acd_recorder_records_malformed_total",
            "Messages skipped: not a valid envelope or record (malformed), or refused by PostgreSQL (rejected)",
            ["topic", "reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "acd_recorder_batch_seconds",
            "Real time to write one batch to PostgreSQL, from the start of its transaction to its commit",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "acd_recorder_write_retries_total",
            "Batch writes that failed because PostgreSQL was unavailable (retried with back-off)",
            registry=registry,
        )
        self.postgres_up = Gauge(
            "acd_recorder_postgres_up",
            "1 while PostgreSQL answers (the readiness link), 0 while not",
            registry=registry,
        )
        self.lag = Gauge(
            "acd_recorder_consumer_lag_messages",
            "Records published but not yet read by this recorder, per topic",
            ["topic"],
            registry=registry,
        )
        for kind in KINDS:
            self.written.labels(kind)
            self.unchanged.labels(kind)
        for topic in topics:
            self.lag.labels(topic).set(0)
