"""`freeze_startup_heap`: after it, a full garbage collection no longer walks the start-up heap.

Run in a child interpreter: freezing is process-wide and the test process's heap is pytest's."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import gc, json, time
import torch, kserve  # the libraries a server process has loaded
from predictors.server.app import freeze_startup_heap

def full_collection_ms():
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        gc.collect()
        best = min(best, time.perf_counter() - started)
    return best * 1000

tracked = len(gc.get_objects())
before = full_collection_ms()
frozen = freeze_startup_heap()
after = full_collection_ms()
print(json.dumps({"tracked": tracked, "frozen": frozen, "before_ms": before, "after_ms": after,
                  "tracked_after": len(gc.get_objects())}))
"""


def test_a_full_collection_after_the_freeze_walks_only_what_came_later() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["frozen"] >= 0.9 * measured["tracked"], measured
    assert measured["tracked_after"] < 0.01 * measured["tracked"], measured
    # the walk is what a collection costs: 100x fewer objects, at least 5x less time (ratios, not ms)
    assert measured["after_ms"] * 5 < measured["before_ms"], measured
