"""Settings: read once at start-up from a YAML file plus ``ACD_<SECTION>__<FIELD>`` variables.

Environment variables override the file. An unknown key, an unknown ``ACD_`` section or an
unparsable value fails start-up with a message naming the key, the value and what was
expected. Secrets come from the environment or from a file named by ``*_file``, never from
a committed configuration file, and are held as ``SecretStr`` so they are never logged.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from router.clock import ScaledClock
from router.domain import AgentConfig, Frozen, QueueConfig
from router.errors import ConfigError, UnknownQueueError

ENV_PREFIX = "ACD_"
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def _read_secret_file(path: Path | None, what: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        raise ValueError(f"cannot read {what} from {path}: {exc.strerror}") from exc


class AmiSettings(Frozen):
    """How to reach Asterisk's manager interface (manager.conf)."""

    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "acd-router"
    secret: SecretStr = SecretStr("")
    secret_file: Path | None = None
    # A link that hangs (Asterisk or the network stops answering, nothing closed) is
    # noticed within ping_interval_s + ping_timeout_s; a connection attempt into a link
    # that still hangs is given up after connect_timeout_s (docs/operations.md).
    connect_timeout_s: float = Field(default=3.0, gt=0)
    action_timeout_s: float = Field(default=5.0, gt=0)
    ping_interval_s: float = Field(default=2.0, gt=0)
    ping_timeout_s: float = Field(
        default=2.0, gt=0, description="a keep-alive Ping not answered by then: the link is dropped and made again"
    )
    reconnect_min_s: float = Field(default=0.2, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    # app_queue raises QueueMember* events for every queue on the PBX: only this one's
    # members are the ACD's agents, and every roster action names it.
    roster_queue: str = Field(
        default="acd-agents", pattern=QUEUE_NAME_PATTERN, description="the app_queue queue agents log in to"
    )

    @model_validator(mode="after")
    def _secret_from_file(self) -> Self:
        from_file = _read_secret_file(self.secret_file, "ami.secret_file")
        if from_file is not None:
            object.__setattr__(self, "secret", from_file)
        return self


class KafkaSettings(Frozen):
    """Kafka (or any Kafka-protocol broker) connection and topic layout."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="acd", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=12, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    consumer_group: str = "acd-routing"
    security_protocol: str = Field(default="PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    request_timeout_s: float = Field(default=10.0, gt=0)
    # Readiness and ingest's fence: the broker must *answer* (ApiVersions), not just accept
    # a connection; a broker that hangs is noticed within probe_interval_s + probe_timeout_s.
    probe_interval_s: float = Field(
        default=1.0, gt=0, description="real seconds between the link probes (ApiVersions) of each process"
    )
    probe_timeout_s: float = Field(
        default=2.0, gt=0, description="a probe not answered by then: the broker counts as unreachable"
    )
    connections_max_idle_s: float = Field(
        default=60.0,
        gt=0,
        description="close a connection idle this long (before a firewall or NAT forgets it silently)",
    )
    metadata_max_age_ms: int = Field(default=5_000, ge=100, description="how soon recreated topics are seen")
    startup_timeout_s: float = Field(default=30.0, gt=0, description="keep trying to reach Kafka at start-up")
    # Tansu does not wake a waiting fetch when data arrives, so a long fetch wait is
    # latency on sparse traffic; 10 ms keeps the loop fast while messages flow, and the
    # idle wait below keeps a quiet pipeline from polling the broker 100 times a second
    # (docs/performance.md, "The idle pipeline").
    fetch_max_wait_ms: int = Field(default=10, ge=0)
    fetch_idle_wait_ms: int = Field(
        default=500,
        ge=0,
        description="once a consumer's partitions are quiet, its fetch wait grows to a tenth of the quiet "
        "time so far, up to this: the first message after a lull of T seconds waits at most T/10 more "
        "(at most this) per hop; at or below `fetch_max_wait_ms`: off",
    )
    max_batch_bytes: int = Field(
        default=1_000_000,
        ge=16_384,
        description="the largest batch a producer sends to one partition (aiokafka's `max_batch_size`): "
        "with 16 KiB, aiokafka's default, a busy routing worker waited for a full batch to drain on most "
        "sends (docs/performance.md); keep it under the broker's `message.max.bytes` (Kafka: 1,048,588)",
    )
    # A routing worker that dies loses its partitions to the others after the session
    # timeout: short, so that waiting callers are not stuck behind a dead process.
    session_timeout_ms: int = Field(default=6_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_poll_interval_ms: int = Field(default=30_000, ge=1_000)

    @model_validator(mode="after")
    def _password_from_file(self) -> Self:
        from_file = _read_secret_file(self.sasl_password_file, "kafka.sasl_password_file")
        if from_file is not None:
            object.__setattr__(self, "sasl_password", from_file)
        return self


SENTINEL_ADDRESS = re.compile(r"^(?P<host>[^\s:]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")


class RedisSettings(Frozen):
    """Where call and agent state lives: one Redis at ``url``, or the primary that Redis
    Sentinel names (``sentinels``, ``sentinel_master``), followed through a failover."""

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    password_file: Path | None = None
    sentinels: tuple[str, ...] = Field(
        default=(),
        description="Sentinel addresses `host:port` (26379 is Sentinel's port); given: every process asks "
        "them for the primary and follows a failover, and `url` only gives the database number, user, "
        "password and `rediss://` (TLS), its host and port unused",
    )
    sentinel_master: str = Field(
        default="mymaster",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the name the sentinels monitor the primary under (`sentinel monitor <name> ...`)",
    )
    sentinel_password: SecretStr | None = Field(
        default=None,
        description="the sentinels' own `requirepass`, if they have one (the data nodes' is `password`); "
        "better `sentinel_password_file`",
    )
    sentinel_password_file: Path | None = Field(
        default=None, description="a file holding the sentinels' password (read at start-up)"
    )
    # A command not answered within socket_timeout_s fails (retriable) and its connection is
    # dropped: a Redis that hangs is noticed within 1 s (the readiness PING) + this. It must
    # stay above every blocking read's block (the record relay's XREADGROUP: 0.1 s).
    socket_timeout_s: float = Field(default=2.0, ge=0.5)
    socket_connect_timeout_s: float = Field(default=2.0, gt=0, description="real seconds to open a connection")
    health_check_interval_s: float = Field(
        default=30.0, ge=0, description="PING a pooled connection idle this long before using it (0: never)"
    )
    tcp_keepalive_s: float = Field(
        default=15.0,
        ge=0,
        description="TCP keep-alive probes after this much silence, 3 of them 5 s apart (0: off; TCP only)",
    )
    startup_timeout_s: float = Field(default=30.0, gt=0, description="keep trying to reach Redis at start-up")
    replica_wait_ms: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="with `sentinels`: a routing worker commits a batch's offsets only once a replica has its "
        "Redis writes, waiting this long for it (`WAIT`); 0: commit without asking (a failover may then lose "
        "the effect of events already committed)",
    )

    @field_validator("sentinels")
    @classmethod
    def _sentinel_addresses(cls, sentinels: tuple[str, ...]) -> tuple[str, ...]:
        for address in sentinels:
            found = SENTINEL_ADDRESS.match(address)
            if found is None or not 1 <= int(found["port"]) <= 65535:
                raise ValueError(f"{address!r} is not host:port (e.g. 10.0.0.5:26379)")
        twice = sorted({address for address in sentinels if sentinels.count(address) > 1})
        if twice:
            raise ValueError(f"sentinels given more than once: {twice}")
        return sentinels

    @model_validator(mode="after")
    def _password_from_file(self) -> Self:
        for field, file_field in (("password", "password_file"), ("sentinel_password", "sentinel_password_file")):
            from_file = _read_secret_file(getattr(self, file_field), f"redis.{file_field}")
            if from_file is not None:
                object.__setattr__(self, field, from_file)
        if self.sentinels and self.url.startswith("unix:"):
            raise ValueError(
                f"redis.url {self.url!r} is a Unix socket but redis.sentinels are given: with sentinels "
                "the url only gives the database (redis://ignored/0), the primary is the one they name"
            )
        return self

    replica_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="with `sentinels`: how long routing holds its commands for a replica that does not "
        "acknowledge (lagging, or none connected) before it goes on without one",
    )

    @model_validator(mode="after")
    def _wait_within_the_timeout(self) -> Self:
        if self.replica_wait_ms / 1000 >= self.socket_timeout_s:
            raise ValueError(
                f"redis.replica_wait_ms ({self.replica_wait_ms}) must stay below redis.socket_timeout_s "
                f"({self.socket_timeout_s} s): a WAIT longer than the timeout would drop its connection"
            )
        return self

    @property
    def replication_barrier(self) -> bool:
        """Whether routing workers wait for a replica before committing (router.store.replication)."""
        return bool(self.sentinels) and self.replica_wait_ms > 0

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``sentinels`` as (host, port) pairs, as redis-py's Sentinel takes them."""
        pairs = []
        for address in self.sentinels:
            host, _, port = address.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs

    @property
    def target(self) -> str:
        """Where the processes reach Redis, for messages: the URL, or the sentinels and name."""
        if self.sentinels:
            return f"sentinel {self.sentinel_master} via {','.join(self.sentinels)}"
        return self.url


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class PostgresSettings(Frozen):
    """Where `acd record` keeps call and agent-state records (docs/records.md)."""

    dsn: SecretStr | None = Field(
        default=None,
        description="`postgresql://user:password@host:5432/dbname` (libpq URL); better `dsn_file`",
    )
    dsn_file: Path | None = Field(default=None, description="a file holding the DSN (read at start-up)")
    pool_size: int = Field(default=4, ge=1, le=100, description="most connections a process opens")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="real seconds to open one connection")
    command_timeout_s: float = Field(
        default=30.0, gt=0, description="real seconds one statement (a batch's write) may take"
    )
    startup_timeout_s: float = Field(
        default=30.0, gt=0, description="keep trying to reach PostgreSQL at start-up"
    )
    retry_max_s: float = Field(
        default=10.0, gt=0, description="longest wait between writes retried while PostgreSQL is down"
    )

    @field_validator("dsn")
    @classmethod
    def _a_postgres_url(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is not None and not dsn.get_secret_value().startswith(POSTGRES_SCHEMES):
            raise ValueError("expected a postgresql:// URL (postgresql://user@host:5432/dbname)")
        return dsn

    @model_validator(mode="after")
    def _dsn_from_file(self) -> Self:
        from_file = _read_secret_file(self.dsn_file, "postgres.dsn_file")
        if from_file is not None:
            object.__setattr__(self, "dsn", self._a_postgres_url(from_file))
        return self

    def require_dsn(self) -> str:
        """The DSN; the processes that use PostgreSQL refuse to start without one."""
        if self.dsn is None or not self.dsn.get_secret_value():
            raise ConfigError(
                "no PostgreSQL DSN: set ACD_POSTGRES__DSN (postgresql://user@host:5432/dbname) or "
                "ACD_POSTGRES__DSN_FILE (a file holding it), or postgres.dsn_file in the config file"
            )
        return self.dsn.get_secret_value()


class HttpSettings(Frozen):
    """Every process serves /metrics, /health and /ready here (port 0 picks a free port)."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    port_file: Path | None = Field(
        default=None, description="once listening, write the port here (for port 0: what was picked)"
    )


class RingNoAnswer(Frozen):
    """What happens to an agent who lets an offered call ring out."""

    auto_pause: bool = True
    reason: str = "ring-no-answer"


class CallbackDialSettings(Frozen):
    """How the dispatcher calls out for queues with callbacks (docs/asterisk.md, Callbacks)."""

    agent_context: str = Field(
        default="acd-callback",
        pattern=r"^[\w.-]+$",
        description="agent first: the agent's phone answers into this context, which dials the caller",
    )
    caller_context: str = Field(
        default="acd-callback-connect",
        pattern=r"^[\w.-]+$",
        description="caller first: the caller answers into this context, which dials the agent",
    )
    caller_dial: str = Field(
        default="PJSIP/{number}@trunk",
        pattern=r"^[A-Za-z0-9_]+/.*\{number\}",
        description="caller first: the Originate channel; {number} is the caller's",
    )
    caller_id: str = Field(
        default="", description="caller first: what the caller sees, e.g. '\"Acme\" <5551000>' ('': the trunk's)"
    )
    ring_timeout_s: float = Field(
        default=30.0, gt=0, le=300, description="seconds Originate rings the first leg (its Timeout)"
    )


class RoutingSettings(Frozen):
    """Knobs of the routing loop."""

    offer_timeout_s: float = Field(default=10.0, gt=0, description="offer not dispatched -> requeue")
    dispatch_timeout_s: float = Field(default=60.0, gt=0, description="dispatched, no dial seen")
    ring_no_answer: RingNoAnswer = RingNoAnswer()
    unknown_queue: str | None = Field(
        default=None, description="queue for calls naming an unknown queue (default: the first)"
    )
    candidate_limit: int = Field(default=64, ge=1, le=10_000)
    timer_interval_s: float = Field(default=0.2, gt=0, description="real seconds between timer ticks")
    connect_context: str = "acd-connect"
    callback: CallbackDialSettings = CallbackDialSettings()
    resync_grace_s: float = Field(
        default=3.0, ge=0, description="real seconds before a resync closes calls it no longer lists"
    )
    resync_catchup_max_s: float = Field(
        default=60.0,
        gt=0,
        description="real seconds a resync waits at most for the routing group to apply what was sent "
        "before it, before closing the calls it no longer lists (router/catchup.py)",
    )
    relay_batch: int = Field(default=500, ge=1, le=10_000, description="records the relay publishes per batch")
    relay_claim_idle_s: float = Field(
        default=30.0,
        gt=0,
        description="real seconds before a relay takes over records another read and never published",
    )


PAUSE_REASON_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class ApiSettings(Frozen):
    """The `acd api` process: agent control, supervisor views, live updates, wallboard."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    # Full access (state changes and reads): supervisors, agent-desktop back ends.
    token: SecretStr | None = None
    token_file: Path | None = None
    # Read-only access (views, live updates): wallboards. Optional.
    read_token: SecretStr | None = None
    read_token_file: Path | None = None
    # Quality reviews only (/api/v1/qa/...): the reviewers' tool. Optional.
    reviewer_token: SecretStr | None = None
    reviewer_token_file: Path | None = None
    public_reads: bool = Field(default=False, description="serve the read endpoints without a token")
    # Kept for configurations written before ami.roster_queue; both name the same queue.
    roster_queue: str = Field(default="acd-agents", pattern=QUEUE_NAME_PATTERN)
    # Comma-separated pause reason codes agents may use; empty accepts any well-formed code.
    pause_reasons: str = ""
    max_wrapup_extend_s: float = Field(default=3600.0, gt=0)
    push_interval_s: float = Field(default=1.0, gt=0, le=60, description="live updates: Redis poll period")
    heartbeat_s: float = Field(default=15.0, gt=0, description="live updates: keep-alive comment period")

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Self:
        for field, file_field in (
            ("token", "token_file"),
            ("read_token", "read_token_file"),
            ("reviewer_token", "reviewer_token_file"),
        ):
            from_file = _read_secret_file(getattr(self, file_field), f"api.{file_field}")
            if from_file is not None:
                if not from_file.get_secret_value():
                    raise ValueError(f"api.{file_field} {getattr(self, file_field)} is empty")
                object.__setattr__(self, field, from_file)
        for code in self.allowed_pause_reasons:
            if not re.match(PAUSE_REASON_PATTERN, code):
                raise ValueError(
                    f"api.pause_reasons: {code!r} is not a valid reason code ({PAUSE_REASON_PATTERN})"
                )
        if self.token is not None and self.read_token is not None and self.token == self.read_token:
            raise ValueError("api.read_token must differ from api.token")
        if self.reviewer_token is not None and self.reviewer_token in (self.token, self.read_token):
            raise ValueError("api.reviewer_token must differ from api.token and api.read_token")
        return self

    @property
    def allowed_pause_reasons(self) -> tuple[str, ...]:
        return tuple(code.strip() for code in self.pause_reasons.split(",") if code.strip())

    def require_token(self) -> SecretStr:
        """The full-access token; the API refuses to start without one."""
        if self.token is None or not self.token.get_secret_value():
            raise ConfigError(
                "the API needs a token for its state-changing endpoints: set ACD_API__TOKEN or "
                "ACD_API__TOKEN_FILE (a file holding the token); clients send 'Authorization: Bearer <token>'"
            )
        return self.token


QA_CRITERION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class QaCriterion(Frozen):
    """One line of the quality review form."""

    name: str = Field(
        pattern=QA_CRITERION_PATTERN, description="the score's key in a review (`scores.<name>`)"
    )
    weight: float = Field(default=1.0, gt=0, le=1000, description="its weight in the review's total")
    description: str = Field(
        default="", max_length=500, description="what the reviewer judges (shown by `GET /api/v1/qa/form`)"
    )


class QaForm(Frozen):
    """The score form reviewers fill in for a sampled call (docs/quality.md)."""

    scale: tuple[int, int] = Field(
        default=(1, 5), description="lowest and highest score of every criterion, whole numbers"
    )
    criteria: tuple[QaCriterion, ...] = Field(
        default=(QaCriterion(name="overall"),), min_length=1, max_length=100, description="what is scored"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        low, high = self.scale
        if low >= high:
            raise ValueError(f"qa.form.scale {list(self.scale)}: the lowest score must be below the highest")
        names = [criterion.name for criterion in self.criteria]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"qa.form.criteria: names must be unique; given more than once: {twice}")
        return self


class QaSettings(Frozen):
    """Quality sampling's seed and the review form (queues say what they sample: `queues[].qa`)."""

    seed: SecretStr | None = Field(
        default=None,
        description="seed of the sampling draw (default: the site name); keep it secret so that "
        "nobody can tell from a call id whether the call will be sampled",
    )
    seed_file: Path | None = Field(default=None, description="a file holding the seed (read at start-up)")
    form: QaForm = QaForm()

    @model_validator(mode="after")
    def _seed_from_file(self) -> Self:
        from_file = _read_secret_file(self.seed_file, "qa.seed_file")
        if from_file is not None:
            object.__setattr__(self, "seed", from_file)
        return self

    def seed_for(self, site: str) -> str:
        """The sampling seed: the configured one, else the site's name."""
        given = self.seed.get_secret_value() if self.seed is not None else ""
        return given or site


class ClockSettings(Frozen):
    """Simulated time: 1.0 in production; scenarios compress time with a larger scale."""

    time_scale: float = Field(default=1.0, gt=0)
    epoch: float | None = None

    def build(self) -> ScaledClock:
        return (
            ScaledClock(self.time_scale) if self.epoch is None else ScaledClock(self.time_scale, self.epoch)
        )


class AcdSettings(BaseSettings):
    """The whole configuration; each component receives only its own section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    site: str = Field(default="main", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    timezone: str | None = Field(
        default=None,
        description="the site's time zone, an IANA name such as `Europe/Berlin`: interval reports "
        "(`acd report`, the reports API) align to its clock; unset: UTC",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the event loop of every `acd` process: `uvloop` (libuv, in C: about a tenth less CPU "
        "per routing decision, docs/performance.md) or `asyncio` (the standard library's)",
    )
    queues: tuple[QueueConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    ami: AmiSettings = AmiSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    routing: RoutingSettings = RoutingSettings()
    clock: ClockSettings = ClockSettings()
    api: ApiSettings = ApiSettings()
    postgres: PostgresSettings = PostgresSettings()
    qa: QaSettings = QaSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, name: str | None) -> str | None:
        if name is not None and not known_time_zone(name):
            raise ValueError("not a time zone this machine knows: expected an IANA name such as Europe/Berlin or UTC")
        return name

    @model_validator(mode="after")
    def _queues_consistent(self) -> Self:
        check_queue_references(self.queues, self.routing.unknown_queue)
        return self

    @model_validator(mode="after")
    def _one_roster_queue(self) -> Self:
        """``ami.roster_queue`` and the older ``api.roster_queue`` must name one queue."""
        ami_set = "roster_queue" in self.ami.model_fields_set
        api_set = "roster_queue" in self.api.model_fields_set
        if ami_set and api_set and self.ami.roster_queue != self.api.roster_queue:
            raise ValueError(
                f"ami.roster_queue {self.ami.roster_queue!r} and api.roster_queue {self.api.roster_queue!r} "
                "differ: set only ami.roster_queue (ACD_AMI__ROSTER_QUEUE), the queue agents log in to"
            )
        name = self.api.roster_queue if api_set and not ami_set else self.ami.roster_queue
        object.__setattr__(self, "ami", self.ami.model_copy(update={"roster_queue": name}))
        object.__setattr__(self, "api", self.api.model_copy(update={"roster_queue": name}))
        return self

    @model_validator(mode="after")
    def _hours_in_site_zone(self) -> Self:
        """Business hours that name no time zone keep the site's (router/schedule.py)."""
        queues = tuple(
            q.model_copy(update={"hours": q.hours.with_default_zone(self.timezone)}) if q.hours else q
            for q in self.queues
        )
        object.__setattr__(self, "queues", queues)
        return self

    def queue_map(self) -> dict[str, QueueConfig]:
        return {queue.name: queue for queue in self.queues}


def known_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone in the machine's (or the tzdata package's) database."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        return False
    return True


def check_queue_references(queues: tuple[QueueConfig, ...], fallback: str | None) -> None:
    """Queue names are unique and every queue a setting points at exists."""
    names = [queue.name for queue in queues]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"queue names must be unique; defined more than once: {duplicates}")
    targets = [(f"queues[{q.name}].overflow.to_queue", q.overflow.to_queue) for q in queues if q.overflow]
    targets.append(("routing.unknown_queue", fallback))
    for where, target in targets:
        if target is not None and target not in names:
            raise UnknownQueueError(
                f"{where} = {target!r} is not a configured queue; configured queues: {names}. "
                "Add the queue under 'queues:' or fix the name."
            )


def load_settings(path: Path | None) -> AcdSettings:
    """Read ``path`` (YAML) and the ``ACD_*`` environment into validated settings."""
    _reject_unknown_env_sections(os.environ)
    data = _read_yaml(path) if path is not None else {}
    try:
        return AcdSettings(**data)
    except UnknownQueueError:
        raise
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path)) from None
    except SettingsError as exc:
        # pydantic-settings decodes a list or mapping given in a variable as JSON, and
        # raises this (not a ValidationError) when it is not JSON.
        raise ConfigError(
            f"{exc}: an ACD_* variable that holds a list or mapping (e.g. ACD_QUEUES, ACD_AGENTS) "
            'must be JSON, e.g. ACD_QUEUES=\'[{"name": "billing"}]\''
        ) from None


# libyaml's loader where PyYAML was built with it (its wheels are): a site's configuration
# with 10,000 agents parses in 1.1 s of CPU instead of 4.0 s, at every start and reload.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}"
        )
    return data


def _reject_unknown_env_sections(environ: Mapping[str, str]) -> None:
    known = set(AcdSettings.model_fields)
    for name in environ:
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if section not in known:
            raise ConfigError(
                f"environment variable {name}: unknown section {section!r}; "
                f"expected ACD_<SECTION>__<FIELD> with SECTION one of {sorted(known)}"
            )


def describe_validation_error(exc: ValidationError, source: Path | None) -> str:
    """One line per problem: where, the value given, and what was expected."""
    origin = f" in {source}" if source else ""
    lines = [f"invalid configuration{origin} (environment ACD_* variables override the file):"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        shown = _shown_value(where, error.get("input"))
        if error["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (value {shown}); {_spelling_hint(error['loc'])}")
        else:
            lines.append(f"  {where} = {shown}: {error['msg']}")
    return "\n".join(lines)


SECRET_WORDS = ("secret", "password", "token", "dsn")


def _shown_value(where: str, value: Any) -> str:
    """The offending value for an error message, never a secret: secret keys are masked, and
    a whole section (a check across fields) is not shown at all, since it may hold one."""
    if any(word in where for word in SECRET_WORDS):
        return "***"
    if isinstance(value, dict):
        return "(the section)"
    return repr(value)


def _spelling_hint(loc: tuple[int | str, ...]) -> str:
    """Closest known keys at ``loc``, and the environment variable the key would be."""
    keys = _known_keys(AcdSettings, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), keys, n=2)
    hint = f"did you mean {' or '.join(repr(k) for k in close)}?" if close else "check the spelling"
    if all(isinstance(part, str) for part in loc):
        env = ENV_PREFIX + "__".join(str(part).upper() for part in loc)
        hint += f" (set in the file, or as the environment variable {env})"
    return hint


def _known_keys(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found by following ``path`` (list indexes skipped)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The pydantic model an annotation holds (directly, or as the items of a tuple/list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
