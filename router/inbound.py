"""What a routing worker reads: AMI events and dispatch outcomes, as domain events."""

from __future__ import annotations

from router.ami.translate import DEFAULT_ROSTER_QUEUE, translate
from router.commands import parse_outcome
from router.envelope import DISPATCH_OUTCOME, Envelope
from router.events import DomainEvent


def domain_event(envelope: Envelope, *, roster_queue: str = DEFAULT_ROSTER_QUEUE) -> DomainEvent | None:
    """The domain event an envelope carries, or None when routing does not care about it."""
    if envelope.type == DISPATCH_OUTCOME:
        return parse_outcome(envelope)
    return translate(envelope, roster_queue=roster_queue)
