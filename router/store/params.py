"""What the stores take besides plain values: where an event stands, a new call, an
overflow move, what ingest knows of an AMI gap."""

from __future__ import annotations

from dataclasses import dataclass

from router.domain import Requirements


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event stands in its stream, for deduplication. Empty for timer work.

    ``part`` names the stream: the producer (envelope source) when the envelope carries a
    producer sequence, else the Kafka ``topic:partition``; ``offset`` is the sequence number
    or Kafka offset, ``session`` the producer session (0 for Kafka offsets).
    """

    part: str = ""
    offset: int = -1
    session: int = 0

    def args(self) -> list[str]:
        return [self.part, f"{self.session}:{self.offset}"]


NO_POSITION = Position()


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call entering its first queue, with the queue's settings resolved."""

    call_id: str
    queue: str
    priority: int
    priority_explicit: bool
    requirements: Requirements | None
    channel: str
    entered_at: float
    relax_due: float | None
    overflow_due: float | None
    sl_threshold: float
    wrapup_s: float
    # For the call's record (docs/records.md): who called ('' unknown) and the requirements
    # in force as it enters (None: its own override, or none).
    caller_number: str = ""
    caller_name: str = ""
    requirements_in_force: Requirements | None = None


@dataclass(frozen=True, slots=True)
class OverflowMove:
    """Where an overflowing call goes when its destination is another queue."""

    queue: str
    priority: int | None  # None: the call keeps the priority it set itself
    sl_threshold: float
    wrapup_s: float
    relax_due: float | None
    overflow_due: float | None
    max_hops: int = 5
    requirements_in_force: Requirements = ()  # the new queue's, as the call enters it


@dataclass(frozen=True, slots=True)
class ResyncGap:
    """What ingest knows of an AMI gap: when it last saw Asterisk, and whether it restarted."""

    link_lost_at: float | None = None
    pbx_restart: bool = False
