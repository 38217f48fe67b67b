"""`python -m load_tests.broker_fetch_cost` over the lab's real broker: one row per step, the
log growing by the step, every figure a CPU time read from /proc."""

from __future__ import annotations

from load_tests.broker_fetch_cost import measure


async def test_each_step_measures_a_longer_log_and_a_short_partition_beside_it() -> None:
    rows = await measure(steps=2, step_messages=200, idle_s=0.3)
    # The log's end offset, as the broker gives it, grows by the step.
    assert rows[0]["log_messages"] > 0 and rows[1]["log_messages"] - rows[0]["log_messages"] == 200
    for row in rows:
        assert set(row) == {
            "log_messages",
            "cpu_s_300_fetches_with_data",
            "cpu_s_5s_idle_fetching",
            "cpu_s_300_fetches_short_partition",
        }
        assert all(value >= 0 for value in row.values())
    assert rows[0]["cpu_s_300_fetches_with_data"] > 0  # the broker's CPU was read, not left at 0
