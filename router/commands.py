"""Routing commands (router -> dispatcher) and dispatch outcomes (dispatcher -> router).

Both travel as envelopes keyed by the call (``call:<id>``) or the agent
(``agent:<device>``), so a call's commands and outcomes stay in order.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from typing import Any, Protocol

from router.envelope import (
    DISPATCH_OUTCOME,
    ROUTING_CALLBACK,
    ROUTING_OFFER,
    ROUTING_OVERFLOW,
    ROUTING_PAUSE,
    ROUTING_RECORD,
    Envelope,
)
from router.errors import MalformedEventError
from router.events import OfferFailed
from router.immutable import immutable


@immutable
class OfferCommand:
    """Ring ``agent_id`` for ``call_id``: the dispatcher redirects the caller's channel."""

    offer_id: str
    call_id: str
    channel: str
    agent_id: str
    device: str
    context: str
    exten: str
    queue: str
    decided_at: float


@immutable
class PauseCommand:
    """Pause an agent in Asterisk's roster (after ring-no-answer), with a reason code."""

    agent_id: str
    device: str
    reason: str
    decided_at: float


@immutable
class OverflowCommand:
    """Send the caller out of the ACD to a dialplan target (``context,exten,priority``)."""

    call_id: str
    channel: str
    queue: str
    context: str
    exten: str
    priority: str
    decided_at: float


@immutable
class RecordCommand:
    """Record a call sampled for quality review: MixMonitor on the caller's ``channel``,
    both directions mixed into ``file`` in Asterisk's monitor directory."""

    call_id: str
    channel: str
    file: str
    agent_id: str
    queue: str
    decided_at: float


@immutable
class CallbackCommand:
    """Call back the caller of ``call_id`` with ``agent_id`` reserved for it: an AMI
    Originate (router/callback.py), the agent's phone first when ``agent_first``."""

    offer_id: str
    call_id: str
    agent_id: str
    device: str
    exten: str  # the agent's dial extension
    number: str  # the caller's number to call
    caller_name: str
    queue: str
    agent_first: bool
    decided_at: float


class CommandSink(Protocol):
    """Where routing commands go (Kafka in production, a list in unit tests)."""

    async def offer(self, command: OfferCommand, started: float) -> None: ...

    async def pause(self, command: PauseCommand) -> None: ...

    async def overflow(self, command: OverflowCommand) -> None: ...

    async def record(self, command: RecordCommand) -> None: ...

    async def callback(self, command: CallbackCommand, started: float) -> None: ...


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A command's field names in order. Every field is a flat value, so reading them is what
    dataclasses.asdict (a deep copy, 2 % of a saturated worker's profile) gave."""
    return tuple(f.name for f in dataclasses.fields(cls))


def _command_envelope(kind: str, command: Any, source: str, key: str, envelope_id: str = "", **data: Any) -> Envelope:
    """A routing command as an envelope: its fields but ``decided_at``, which is the
    envelope's time; ``data`` adds or replaces fields."""
    fields = {name: getattr(command, name) for name in _field_names(command.__class__)}
    decided_at = fields.pop("decided_at")
    fields.update(data)
    return Envelope(
        type=kind, id=envelope_id or uuid.uuid4().hex, source=source, ts=decided_at, key=key, data=fields
    )


def offer_envelope(command: OfferCommand, source: str, *, decision_ms: float | None = None) -> Envelope:
    """``decision_ms``: how long the worker took from reading the event that led to this
    offer to handing the command to Kafka; benchmarks and load tests read it here, so that
    measuring adds nothing to the routing loop."""
    timing = {} if decision_ms is None else {"decision_ms": round(decision_ms, 3)}
    return _command_envelope(ROUTING_OFFER, command, source, f"call:{command.call_id}", command.offer_id, **timing)


def pause_envelope(command: PauseCommand, source: str) -> Envelope:
    return _command_envelope(ROUTING_PAUSE, command, source, f"agent:{command.device}")


def overflow_envelope(command: OverflowCommand, source: str) -> Envelope:
    return _command_envelope(ROUTING_OVERFLOW, command, source, f"call:{command.call_id}")


def record_envelope(command: RecordCommand, source: str) -> Envelope:
    """Keyed by the call, so it follows the call's offer on the same partition."""
    return _command_envelope(ROUTING_RECORD, command, source, f"call:{command.call_id}")


def callback_envelope(command: CallbackCommand, source: str) -> Envelope:
    """Keyed by the call, like its offers; the offer id is the envelope's id."""
    agent_first = "1" if command.agent_first else "0"
    key = f"call:{command.call_id}"
    return _command_envelope(ROUTING_CALLBACK, command, source, key, command.offer_id, agent_first=agent_first)


def _fields(envelope: Envelope, names: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for name in names:
        value = envelope.data.get(name)
        if not isinstance(value, str):
            raise MalformedEventError(
                f"{envelope.type} {envelope.id}: field {name!r} missing or not a string"
            )
        values[name] = value
    return values


def parse_offer(envelope: Envelope) -> OfferCommand:
    names = ("offer_id", "call_id", "channel", "agent_id", "device", "context", "exten", "queue")
    return OfferCommand(**_fields(envelope, names), decided_at=envelope.ts)


def parse_pause(envelope: Envelope) -> PauseCommand:
    return PauseCommand(**_fields(envelope, ("agent_id", "device", "reason")), decided_at=envelope.ts)


def parse_overflow(envelope: Envelope) -> OverflowCommand:
    names = ("call_id", "channel", "queue", "context", "exten", "priority")
    return OverflowCommand(**_fields(envelope, names), decided_at=envelope.ts)


def parse_record(envelope: Envelope) -> RecordCommand:
    names = ("call_id", "channel", "file", "agent_id", "queue")
    return RecordCommand(**_fields(envelope, names), decided_at=envelope.ts)


def parse_callback(envelope: Envelope) -> CallbackCommand:
    names = ("offer_id", "call_id", "agent_id", "device", "exten", "number", "caller_name", "queue", "agent_first")
    fields = _fields(envelope, names)
    agent_first = fields.pop("agent_first") == "1"
    return CallbackCommand(**fields, agent_first=agent_first, decided_at=envelope.ts)


def failure_envelope(
    command: OfferCommand | CallbackCommand,
    reason: str,
    *,
    channel_gone: bool,
    at: float,
    source: str,
    sequence: tuple[int, int] | None = None,
) -> Envelope:
    """``sequence``: the producer's (session, seq), for deduplication by the routers."""
    data: dict[str, Any] = {
        "outcome": "failed",
        "offer_id": command.offer_id,
        "call_id": command.call_id,
        "agent_id": command.agent_id,
        "reason": reason,
        "channel_gone": channel_gone,
    }
    session, seq = sequence if sequence is not None else (None, None)
    return Envelope(
        type=DISPATCH_OUTCOME,
        id=uuid.uuid4().hex,
        source=source,
        ts=at,
        key=f"call:{command.call_id}",
        data=data,
        session=session,
        seq=seq,
    )


def parse_outcome(envelope: Envelope) -> OfferFailed | None:
    if envelope.data.get("outcome") != "failed":
        return None
    fields = _fields(envelope, ("offer_id", "call_id", "agent_id", "reason"))
    return OfferFailed(
        call_id=fields["call_id"],
        offer_id=fields["offer_id"],
        agent_id=fields["agent_id"],
        reason=fields["reason"],
        channel_gone=bool(envelope.data.get("channel_gone")),
        at=envelope.ts,
    )
