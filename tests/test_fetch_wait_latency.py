"""load_tests/fetch_wait_latency.py: what the consumers' fetch waits cost a sparse stream."""

from __future__ import annotations

import argparse

import pytest

from load_tests.fetch_wait_latency import _count, _gap_ranges, measure
from router.settings import KafkaSettings


@pytest.mark.integration  # measure() starts a broker of its own
async def test_every_message_of_each_range_is_timed_from_send_to_read() -> None:
    settings = KafkaSettings(topic_prefix="fwl-test", fetch_max_wait_ms=10, fetch_idle_wait_ms=500)
    results = await measure(settings, [(0.0, 0.02), (0.05, 0.1)], messages=3)
    assert [(r.gaps_s, r.messages) for r in results] == [("0.0:0.02", 3), ("0.05:0.1", 3)]
    for result in results:
        assert result.p50_ms is not None and result.max_ms is not None
        assert 0 < result.p50_ms <= result.max_ms
        assert result.broker_cpu_percent >= 0


def test_gap_ranges_are_read_and_bad_ones_say_how_to_write_them() -> None:
    assert _gap_ranges("0.05:0.3,2:8") == [(0.05, 0.3), (2.0, 8.0)]
    assert _gap_ranges("1") == [(1.0, 1.0)]
    for bad in ("fast", "3:1", "-1:2"):
        with pytest.raises(argparse.ArgumentTypeError, match="LOW:HIGH"):
            _gap_ranges(bad)


def test_a_count_of_messages_is_one_or_more() -> None:
    assert _count("40") == 40
    for bad in ("0", "-3", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="1 or more"):
            _count(bad)
