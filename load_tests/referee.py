"""The referee: compares the router's view of every call with the simulator's ground truth.

A call is *lost* when it entered a queue and the router accounts for it as neither
answered, abandoned, overflowed nor still waiting. A *mismatch* is a call the router does
account for, but wrongly (e.g. it believes a caller who hung up is still waiting).
Double assignments come from the simulator itself: a Redirect that reached an agent whose
phone was already at capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from load_tests.amisim.ledger import CallRecord, Ledger, Shutdown

QUEUED = frozenset({"waiting", "offered", "dispatching", "ringing"})
ANSWERED = frozenset({"connected", "completed"})
# pbx_restart: a waiting caller an Asterisk restart cut off (the ledger's ended_by_restart).
# closed: a caller who arrived while its queue was closed (business hours).
ACCOUNTED = QUEUED | ANSWERED | {"abandoned", "overflowed", "transferred", "pbx_restart", "closed"}
# Transferred out: the router may not have seen the agent's leg end yet (still connected).
TRANSFERRED = frozenset({"transferred", "connected"})


@dataclass
class Verdict:
    calls: int
    lost: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)  # (call, truth, router)
    double_assignments: int = 0

    @property
    def clean(self) -> bool:
        return not self.lost and not self.mismatched and not self.double_assignments


def expected_states(call: CallRecord, shutdowns: Sequence[Shutdown] = ()) -> frozenset[str]:
    if call.waiting:
        return QUEUED
    if call.state == "transferred":
        return TRANSFERRED
    if call.answered_at is not None:
        return ANSWERED
    if call.state == "overflowed":
        return frozenset({"overflowed"})
    if call.state == "closed":
        return frozenset({"closed"})
    if call.state == "ended_by_restart":
        return frozenset({"pbx_restart"})  # an abandon here would be the bug this guards
    # A caller who hung up just as the router overflowed it (or turned it away, its queue
    # closed): either is an honest account. So is "cut off by the restart" for a caller who
    # hung up just before Asterisk began to shut down: ingest learns of the shutdown by
    # asking Asterisk once the Hangup has reached it (workers/ingest.py, _ProbedHangup).
    if call.abandoned_at is not None and any(s.blurs(call.abandoned_at) for s in shutdowns):
        return frozenset({"abandoned", "pbx_restart"})
    return frozenset({"abandoned", "overflowed", "closed"})


def judge(ledger: Ledger, router_states: Mapping[str, str]) -> Verdict:
    """``router_states``: call id -> the router's call state ('' when it never heard of it)."""
    verdict = Verdict(calls=len(ledger.calls), double_assignments=len(ledger.double_assignments))
    for call in ledger.calls.values():
        state = router_states.get(call.call_id, "")
        if state not in ACCOUNTED:
            verdict.lost.append(call.call_id)
        elif state not in expected_states(call, ledger.shutdowns):
            verdict.mismatched.append((call.call_id, call.state, state))
    return verdict
