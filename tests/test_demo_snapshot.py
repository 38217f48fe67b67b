"""The demo reads its Prometheus totals between two summaries and keeps them only if no
count they are held against moved meanwhile (load_tests/demo.py, ``_with_metrics``)."""

from __future__ import annotations

from typing import Any

from load_tests.demo import moving_counts


def summary(**changes: int) -> dict[str, Any]:
    counts = {"offered": 40, "answered": 35, "abandoned": 2, "overflowed": 0, "transferred": 19, "transferred_back": 3}
    truth = {"offered": 40, "answered": 35, "abandoned": 2, "transfers": 19, "requeued_by_transfer": 3}
    for key, value in changes.items():
        if key.startswith("truth_"):
            truth[key.removeprefix("truth_")] = value
        else:
            counts[key] = value
    return counts | {"ground_truth": truth}


def test_a_transfer_made_while_the_totals_were_read_makes_them_read_again() -> None:
    """test_e2e_transfer once saw acd_calls_transferred_total 20 against 19 in Redis and in
    the ledger: a transfer between the two summaries moved nothing the check looked at."""
    before = moving_counts(summary())
    assert moving_counts(summary()) == before
    for moved in ({"transferred": 20}, {"truth_transfers": 20}, {"transferred_back": 4}, {"answered": 36}):
        assert moving_counts(summary(**moved)) != before, moved
