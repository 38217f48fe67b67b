"""Interval figures from finished calls and agent states: pure, no I/O (docs/reports.md).

A call counts in the interval in which it entered the ACD (``entered_at``) and in the
queue it ended in; an agent's state counts, second by second, in every interval it
overlaps. The formulas are router/kpi.py's: service level by each queue's configured
formula (``service_level_parts`` per call, so that queues and intervals add up as
numerator and denominator), ASA, abandonment rate and occupancy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router import kpi
from router.domain import DEFAULT_SL_FORMULA, SlFormula
from workers.reports.intervals import locate, overlaps

PER_QUEUE = "per_queue"  # the formula of a site row whose queues use different formulas
NO_REASON = "(none)"  # a pause without a reason code (codes never hold parentheses)
# Agent states whose time counts as logged in (docs/records.md names them).
LOGGED_IN_STATES = ("available", "reserved", "on_call", "wrap_up", "paused")


@dataclass(frozen=True, slots=True)
class CallFacts:
    """A finished call as the reports read it: the columns of ``call_records`` they use."""

    queue: str
    agent_id: str
    entered_at: datetime
    outcome: str
    answered: bool  # answered_at is set (an answered call may end ``transferred`` or ``closed_by_resync``)
    wait_s: float
    talk_s: float
    wrapup_s: float | None  # None while its agent's wrap-up runs
    sl_threshold_s: float
    answered_within_threshold: bool
    abandoned_within_threshold: bool

    @property
    def abandoned(self) -> bool:
        """The caller left before an answer; a call the resync closed unanswered counts as
        the router's statistics count it: abandoned."""
        return self.outcome == "abandoned" or (self.outcome == "closed_by_resync" and not self.answered)

    @property
    def short_abandon(self) -> bool:
        """Abandoned within the threshold: the record's flag; for a call the resync closed
        (whose flag the router leaves false) the flag's own definition, wait <= threshold."""
        if self.outcome == "closed_by_resync":
            return self.abandoned and self.wait_s <= self.sl_threshold_s
        return self.abandoned and self.abandoned_within_threshold


@dataclass(frozen=True, slots=True)
class StateSpan:
    """One agent-state record: ``state`` from ``start`` to ``end``."""

    agent_id: str
    state: str
    reason: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Review:
    """A quality review's total score, for the call's agent in the call's interval."""

    agent_id: str
    entered_at: datetime
    total: float


def _mean(total: float, count: float) -> float | None:
    return total / count if count > 0 else None


@dataclass
class CallTally:
    """Calls added up: counts, sums and the service level's numerator and denominator."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandons: int = 0
    overflowed: int = 0
    closed: int = 0  # arrived while the queue was closed: in no other figure
    answered_within: int = 0
    answer_wait_sum: float = 0.0
    talk_sum: float = 0.0
    wrapup_sum: float = 0.0
    wrapups: int = 0
    longest_wait_s: float | None = None
    sl_numerator: float = 0.0
    sl_denominator: float = 0.0

    def add(self, call: CallFacts, formula: SlFormula) -> None:
        if call.outcome == "closed":  # never offered (business hours): not in offered nor SL
            self.closed += 1
            return
        stats = _call_stats(call)
        self.offered += 1
        self.answered += int(call.answered)
        self.abandoned += int(call.abandoned)
        self.short_abandons += int(call.short_abandon)
        self.overflowed += int(call.outcome == "overflowed")
        self.answered_within += int(stats["answered_within"])
        if call.answered:
            self.answer_wait_sum += call.wait_s
            self.talk_sum += call.talk_s
            if call.wrapup_s is not None:
                self.wrapup_sum += call.wrapup_s
                self.wrapups += 1
        self.longest_wait_s = max(self.longest_wait_s or 0.0, call.wait_s)
        # service_level_parts is a sum over calls, so each call's parts add up to the queue's.
        numerator, denominator = kpi.service_level_parts(stats, formula)
        self.sl_numerator += numerator
        self.sl_denominator += denominator

    def merge(self, other: CallTally) -> None:
        for name in (
            "offered", "answered", "abandoned", "short_abandons", "overflowed", "closed", "answered_within",
            "answer_wait_sum", "talk_sum", "wrapup_sum", "wrapups", "sl_numerator", "sl_denominator",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.longest_wait_s is not None:
            self.longest_wait_s = max(self.longest_wait_s or 0.0, other.longest_wait_s)

    def figures(self, formula: str) -> dict[str, Any]:
        """The call columns of a report row (docs/reports.md, Columns)."""
        stats = {
            "offered": float(self.offered),
            "abandoned": float(self.abandoned),
            "answered": float(self.answered),
            "answer_wait_sum": self.answer_wait_sum,
        }
        avg_talk = _mean(self.talk_sum, self.answered)
        avg_wrapup = _mean(self.wrapup_sum, self.wrapups)
        return {
            "offered": self.offered,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "abandoned_within_threshold": self.short_abandons,
            "overflowed": self.overflowed,
            "closed": self.closed,
            "answered_within_threshold": self.answered_within,
            "service_level": _mean(self.sl_numerator, self.sl_denominator),
            "service_level_formula": formula,
            "asa_s": kpi.asa_seconds(stats),
            "aht_s": None if avg_talk is None else avg_talk + (avg_wrapup or 0.0),
            "avg_talk_s": avg_talk,
            "avg_wrapup_s": avg_wrapup,
            "abandon_rate": kpi.abandon_rate(stats),
            "longest_wait_s": self.longest_wait_s,
        }


def _call_stats(call: CallFacts) -> dict[str, float]:
    """One call as the queue statistics router/kpi.py reads (answered_within, abandoned_after, ...)."""
    within = call.answered and call.answered_within_threshold
    return {
        "offered": 1.0,
        "answered": float(call.answered),
        "answered_within": float(within),
        "abandoned": float(call.abandoned),
        "abandoned_after": float(call.abandoned and not call.short_abandon),
    }


@dataclass
class AgentTally:
    """An agent's time by state (seconds), calls handled and quality scores."""

    calls_handled: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOGGED_IN_STATES, 0.0))
    paused_by_reason: dict[str, float] = field(default_factory=dict)
    reviews: int = 0
    score_sum: float = 0.0

    def add_state(self, state: str, reason: str, seconds: float) -> None:
        if state not in self.seconds:
            return  # logged_out: not logged in
        self.seconds[state] += seconds
        if state == "paused":
            reason = reason or NO_REASON
            self.paused_by_reason[reason] = self.paused_by_reason.get(reason, 0.0) + seconds

    def merge(self, other: AgentTally) -> None:
        self.calls_handled += other.calls_handled
        for state, seconds in other.seconds.items():
            self.seconds[state] += seconds
        for reason, seconds in other.paused_by_reason.items():
            self.paused_by_reason[reason] = self.paused_by_reason.get(reason, 0.0) + seconds
        self.reviews += other.reviews
        self.score_sum += other.score_sum

    @property
    def active(self) -> bool:
        return self.calls_handled > 0 or self.reviews > 0 or any(self.seconds.values())

    def figures(self) -> dict[str, Any]:
        talk, wrapup, available = self.seconds["on_call"], self.seconds["wrap_up"], self.seconds["available"]
        return {
            "calls_handled": self.calls_handled,
            "talk_s": talk,
            "wrapup_s": wrapup,
            "reserved_s": self.seconds["reserved"],
            "available_s": available,
            "paused_s": self.seconds["paused"],
            "paused_by_reason": dict(sorted(self.paused_by_reason.items())),
            "logged_in_s": sum(self.seconds.values()),
            "occupancy": kpi.occupancy(talk + wrapup, available),
            "qa_reviews": self.reviews,
            "avg_quality_score": _mean(self.score_sum, self.reviews),
        }


def tally_calls(
    points: Sequence[datetime], calls: Iterable[CallFacts], formulas: Mapping[str, SlFormula]
) -> dict[tuple[int, str], CallTally]:
    """Per (interval, queue): the calls that entered in that interval and ended in that queue."""
    cells: dict[tuple[int, str], CallTally] = defaultdict(CallTally)
    for call in calls:
        index = locate(points, call.entered_at)
        if 0 <= index < len(points) - 1:
            cells[index, call.queue].add(call, formulas.get(call.queue, DEFAULT_SL_FORMULA))
    return dict(cells)


def tally_agents(
    points: Sequence[datetime],
    spans: Iterable[StateSpan],
    calls: Iterable[CallFacts],
    reviews: Iterable[Review],
) -> dict[tuple[int, str], AgentTally]:
    """Per (interval, agent): state time split at the boundaries, calls handled and reviews
    by the interval the call entered in."""
    cells: dict[tuple[int, str], AgentTally] = defaultdict(AgentTally)
    for span in spans:
        for index, seconds in overlaps(points, span.start, span.end):
            cells[index, span.agent_id].add_state(span.state, span.reason, seconds)
    last = len(points) - 1
    for call in calls:
        index = locate(points, call.entered_at)
        if call.answered and call.agent_id and 0 <= index < last:
            cells[index, call.agent_id].calls_handled += 1
    for review in reviews:
        index = locate(points, review.entered_at)
        if 0 <= index < last:
            cell = cells[index, review.agent_id]
            cell.reviews += 1
            cell.score_sum += review.total
    return dict(cells)


def site_formula(formulas: Iterable[str]) -> str:
    """The formula a site row states: the queues' one, or ``per_queue`` when they differ."""
    distinct = set(formulas)
    return distinct.pop() if len(distinct) == 1 else PER_QUEUE
