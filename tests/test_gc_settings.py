"""The garbage collector as every `acd` process sets it at start-up (workers.runtime)."""

from __future__ import annotations

import json
import subprocess
import sys

from workers.runtime import GC_THRESHOLDS

# Run in a fresh interpreter: freezing the test process's own objects would change the suite.
PROBE = """
import gc, json, weakref
import workers.routing  # what a routing worker imports before it starts
from workers.runtime import settle_garbage_collector

settle_garbage_collector()
frozen = gc.get_freeze_count()

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after start-up
alive = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"frozen": frozen, "thresholds": gc.get_threshold(), "cycle_freed": alive() is None}))
"""


def test_start_up_objects_are_frozen_and_later_cycles_still_collected() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["frozen"] > 10_000, seen  # modules, classes and functions: out of every collection
    assert tuple(seen["thresholds"]) == GC_THRESHOLDS
    assert seen["cycle_freed"], "a cycle made after start-up must still be collected"
