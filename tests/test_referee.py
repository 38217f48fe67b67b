"""The referee's account of a call against the simulator's ground truth."""

from __future__ import annotations

from load_tests.amisim.ledger import CallRecord, Ledger, Shutdown
from load_tests.referee import judge


def abandoned(call_id: str, at: float) -> CallRecord:
    call = CallRecord(call_id, "billing", None, None, 0.0, 60.0, 30.0, f"PJSIP/trunk-{call_id}")
    call.state, call.abandoned_at, call.ended_at = "abandoned", at, at
    return call


def test_a_hangup_just_before_a_restart_began_may_be_counted_as_the_restarts() -> None:
    """Ingest asks Asterisk whether it is shutting down once a Hangup reaches it: a caller who
    hung up a moment before the restart began can be taken for one the restart cut off."""
    ledger = Ledger(shutdowns=[Shutdown(began_at=100.0, ambiguous_from=80.0)])
    for call in (abandoned("just-before", 95.0), abandoned("long-before", 50.0), abandoned("plain", 96.0)):
        ledger.calls[call.call_id] = call
    router = {"just-before": "pbx_restart", "long-before": "pbx_restart", "plain": "abandoned"}
    verdict = judge(ledger, router)
    assert verdict.mismatched == [("long-before", "abandoned", "pbx_restart")]
    assert judge(Ledger(calls={"c": abandoned("c", 95.0)}), {"c": "pbx_restart"}).mismatched
