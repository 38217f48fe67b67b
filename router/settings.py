"""Settings: read once at start-up from a YAML file plus ``ACD_<SECTION>__<FIELD>`` variables.

Environment variables override the file. An unknown key, an unknown ``ACD_`` section or an
unparsable value fails start-up with a message naming the key, the value and what was
expected. Secrets come from the environment or from a file named by ``*_file``, never from
a committed configuration file, and are held as ``SecretStr`` so they are never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from router.clock import ScaledClock
from router.domain import AgentConfig, Frozen, QueueConfig
from router.errors import ConfigError, UnknownQueueError

ENV_PREFIX = "ACD_"


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
    connect_timeout_s: float = Field(default=5.0, gt=0)
    action_timeout_s: float = Field(default=5.0, gt=0)
    ping_interval_s: float = Field(default=5.0, gt=0)
    reconnect_min_s: float = Field(default=0.2, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)

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
    startup_timeout_s: float = Field(default=30.0, gt=0, description="keep trying to reach Kafka at start-up")
    # Tansu does not wake a waiting fetch when data arrives, so a long fetch wait is
    # pure latency; 10 ms keeps the routing loop's p99 low at a small CPU cost.
    fetch_max_wait_ms: int = Field(default=10, ge=0)
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


class RedisSettings(Frozen):
    """Where call and agent state lives."""

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    password_file: Path | None = None
    socket_timeout_s: float = Field(default=5.0, gt=0)
    startup_timeout_s: float = Field(default=30.0, gt=0, description="keep trying to reach Redis at start-up")

    @model_validator(mode="after")
    def _password_from_file(self) -> Self:
        from_file = _read_secret_file(self.password_file, "redis.password_file")
        if from_file is not None:
            object.__setattr__(self, "password", from_file)
        return self


class HttpSettings(Frozen):
    """Every process serves /metrics, /health and /ready here (port 0 picks a free port)."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


class RingNoAnswer(Frozen):
    """What happens to an agent who lets an offered call ring out."""

    auto_pause: bool = True
    reason: str = "ring-no-answer"


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
    queues: tuple[QueueConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    ami: AmiSettings = AmiSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    routing: RoutingSettings = RoutingSettings()
    clock: ClockSettings = ClockSettings()

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

    @model_validator(mode="after")
    def _queues_consistent(self) -> Self:
        check_queue_references(self.queues, self.routing.unknown_queue)
        return self

    def queue_map(self) -> dict[str, QueueConfig]:
        return {queue.name: queue for queue in self.queues}


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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
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
        value = error.get("input")
        shown = "***" if "secret" in where or "password" in where else repr(value)
        if error["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (value {shown}); check the spelling")
        else:
            lines.append(f"  {where} = {shown}: {error['msg']}")
    return "\n".join(lines)
