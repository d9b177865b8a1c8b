"""Latency targets for the batcher: what a forward pass costs, and what that allows.

`ForwardCost` is an online estimate of one forward pass's duration as ``fixed + per_item x size``: a
least-squares line through the recent batches (each weighted by `DECAY` ** its age, at most `WINDOW`
of them), so it follows a device that gets faster (warm caches) or slower (a neighbour on the CPU).
While every recent batch had the same size the two terms cannot be told apart; the line then goes
through zero (all cost per item), which over-estimates bigger batches, the safe side; a fitted line that
falls with the size (noise on a device whose cost hardly grows with it) is taken as a constant. Its
`upper` bound adds `SPREAD_FACTOR` x the relative spread of recent durations around the line, so that a
target meant for the p99 is planned with a margin for a noisy device rather than at the mean.

`RecentDuration` learns a request's time on either side of the queue the same way, as a smoothed high
estimate (mean + `DEVIATION_FACTOR` x mean absolute deviation): `preprocess` (from the request's
announcement, when the runtime starts decoding it, until its items are queued) and `after_forward` (from
the end of its forward pass until the runtime has its answer: ``finish`` in the worker pool).

`LatencyTarget` turns the estimates into the batcher's decisions for a target T on every item's time at
the server, from the request's arrival (the edge) until its answer (seconds). An item's age counts from
that arrival, so the time before the queue (reading, decoding, preprocessing) is in it; the time after
the forward pass is planned for by working to the `budget` T - `after_forward.high`. Forward passes are
predicted with `ForwardCost.upper`:

- batch size (`batch_size`): the largest batch (at most ``max_batch_size`` and what waits) whose end
  keeps its oldest item within the budget, provided the items it leaves behind can still be served within
  the budget after it; when the waiting items cannot all be served in time anyway (overload without
  refusal), as many as allowed (throughput first: a smaller batch would only make more items late);
- the wait for a fuller batch (`wait_until`; only while another request is being preprocessed, as
  without a target): until the last moment a batch one item bigger still ends the oldest within the
  budget (`latest_start`), but no longer than an announced request takes to arrive (`preprocess.high`,
  at least the fixed cost of a pass, which taking it along saves), so the device does not idle for
  company that is not coming soon;
- refusal (`predict`; the batcher refuses only with ``max_queue_delay_ms`` set): a request is refused
  when, serving the queue as it is plus the request's items first come first served in batches of up to
  ``max_batch_size`` after the running pass, some batch (the request's or one ahead of it that the
  request's items would make bigger) would end after its oldest item's budget. Admitted work thus never
  needs a smaller batch than the largest allowed, which keeps the throughput of the admitted load at the
  device's best for the target instead of decaying into small batches under overload.

The queue is first come first served by the time items were queued; with ages from arrival, a batch's
oldest item is not always its first, so every rule takes the oldest of the items a batch would hold.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

#: recent batches the estimate is fitted to, and the weight lost per newer batch
WINDOW = 64
DECAY = 0.95
#: weight of the newest batch in the smoothed squared relative error of the estimate
SPREAD_SMOOTHING = 0.1
#: planning margin: upper = estimate x (1 + SPREAD_FACTOR x relative spread); spread capped at MAX_SPREAD
SPREAD_FACTOR = 2.0
MAX_SPREAD = 1.0
#: weight of the newest request in a `RecentDuration`, and its high estimate's deviations above the mean
DURATION_SMOOTHING = 0.1
DEVIATION_FACTOR = 2.0


class ForwardCost:
    """Seconds of one forward pass of ``size`` items, learnt from the batches that ran."""

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque(maxlen=WINDOW)
        self.fixed = 0.0
        self.per_item = 0.0
        self._squared_error: float | None = None

    @property
    def known(self) -> bool:
        return bool(self._samples)

    @property
    def spread(self) -> float:
        """Relative standard deviation of recent durations around the estimate (0 until measured)."""
        return 0.0 if self._squared_error is None else min(MAX_SPREAD, math.sqrt(self._squared_error))

    def seconds(self, size: int) -> float:
        return self.fixed + self.per_item * size

    def upper(self, size: int) -> float:
        """The estimate with its planning margin: what a latency target is checked against."""
        return self.seconds(size) * (1.0 + SPREAD_FACTOR * self.spread)

    def observe(self, size: int, seconds: float) -> None:
        if self.known and (predicted := self.seconds(size)) > 0:
            error = (seconds / predicted - 1.0) ** 2
            previous = self._squared_error
            self._squared_error = error if previous is None else previous + SPREAD_SMOOTHING * (error - previous)
        self._samples.append((size, seconds))
        self._fit()

    def _fit(self) -> None:
        count = len(self._samples)
        rows = [(DECAY ** (count - 1 - i), x, y) for i, (x, y) in enumerate(self._samples)]
        total = sum(w for w, _, _ in rows)
        mean_x = sum(w * x for w, x, _ in rows) / total
        mean_y = sum(w * y for w, _, y in rows) / total
        sxx = sum(w * (x - mean_x) ** 2 for w, x, _ in rows)
        if sxx <= 1e-9 * total:
            # One size only: fixed and per-item cost cannot be told apart; all of it is taken as per
            # item, which over-estimates bigger batches (the safe side) until other sizes ran.
            intercept, slope = 0.0, mean_y / mean_x
        else:
            slope = sum(w * (x - mean_x) * (y - mean_y) for w, x, y in rows) / sxx
            intercept = mean_y - slope * mean_x
            if slope < 0:  # noise on a device whose cost barely grows with the batch: a constant
                intercept, slope = mean_y, 0.0
            elif intercept < 0:  # no fixed cost: the least-squares line through zero
                intercept = 0.0
                slope = sum(w * x * y for w, x, y in rows) / sum(w * x * x for w, x, _ in rows)
        self.fixed, self.per_item = intercept, slope


class RecentDuration:
    """Seconds a request spends in one step outside the forward pass, learnt from the recent requests:
    exponentially weighted mean and mean absolute deviation; `high` (mean + 2 deviations, about the 95th
    percentile of a normal spread) is what a plan for a p99 counts with. 0 until measured."""

    def __init__(self) -> None:
        self.mean: float | None = None
        self.deviation = 0.0

    @property
    def known(self) -> bool:
        return self.mean is not None

    @property
    def high(self) -> float:
        return 0.0 if self.mean is None else self.mean + DEVIATION_FACTOR * self.deviation

    def observe(self, seconds: float) -> None:
        if self.mean is None:
            self.mean = seconds
            return
        error = seconds - self.mean
        self.mean += DURATION_SMOOTHING * error
        self.deviation += DURATION_SMOOTHING * (abs(error) - self.deviation)


@dataclass(frozen=True)
class Prediction:
    """What queueing a request now would lead to, in seconds from now (see `LatencyTarget.predict`)."""

    #: until the batch holding the request's first item starts
    wait: float
    #: until the batch holding its last item ends
    completion: float
    #: how far the worst item (the request's or one ahead of it) would end past the target (<= 0: none)
    lateness: float


class LatencyTarget:
    """The batcher's choices for target `seconds` (arrival -> answer per item) and `max_batch_size`."""

    def __init__(self, seconds: float, max_batch_size: int, cost: ForwardCost,
                 preprocess: RecentDuration | None = None, after_forward: RecentDuration | None = None) -> None:
        self.seconds = seconds
        self.max_batch_size = max_batch_size
        self.cost = cost
        self.preprocess = preprocess or RecentDuration()
        self.after_forward = after_forward or RecentDuration()

    @property
    def budget(self) -> float:
        """Seconds from an item's arrival to the end of its forward pass: the target less what follows."""
        return self.seconds - self.after_forward.high

    def size_limit(self, oldest_age: float) -> int:
        """The largest batch (<= max_batch_size) that ends an item `oldest_age` seconds old within the
        budget; 0 if none does. Without any measurement: max_batch_size."""
        return self._largest_in_time([oldest_age] * self.max_batch_size, 0, 0.0)

    def batch_size(self, ages: Sequence[float]) -> int:
        """Items to take now from the waiting items aged `ages` (seconds since arrival, in queue order)."""
        largest = min(len(ages), self.max_batch_size)
        first = self._first_of_a_plan_in_time(ages)
        return largest if first is None else min(largest, first)

    def _first_of_a_plan_in_time(self, ages: Sequence[float]) -> int | None:
        """The first batch of a plan that serves every item aged `ages` within the budget, each batch as
        large as its oldest item allows; None when no such plan exists."""
        elapsed, taken, first = 0.0, 0, None
        while taken < len(ages):
            size = self._largest_in_time(ages, taken, elapsed)
            if size < 1:
                return None
            first = size if first is None else first
            taken += size
            elapsed += self.cost.upper(size)
        return first

    def _largest_in_time(self, ages: Sequence[float], taken: int, elapsed: float) -> int:
        """The largest batch of the items from `taken` on, starting `elapsed` seconds from now, whose
        oldest item ends within the budget (its end and its oldest age only grow with its size); without
        any measurement, as many as max_batch_size allows."""
        candidates = ages[taken:taken + self.max_batch_size]
        if not self.cost.known:
            return len(candidates)
        oldest, size = -math.inf, 0
        for age in candidates:
            oldest = max(oldest, age)
            if oldest + elapsed + self.cost.upper(size + 1) > self.budget:
                break
            size += 1
        return size

    def latest_start(self, oldest_arrived_at: float, size: int) -> float:
        """The last moment a batch of `size` may start and still end the oldest item within the budget."""
        return oldest_arrived_at + self.budget - self.cost.upper(min(size, self.max_batch_size))

    def wait_until(self, free_since: float, oldest_arrived_at: float, size: int) -> float:
        """How long a free device waits (since `free_since`) for an announced request to make a batch of
        `size`: until `latest_start`, but no longer than such a request takes to be preprocessed (the
        high estimate; at least the fixed cost of a pass, which taking it along saves)."""
        patience = max(self.cost.fixed, self.preprocess.high)
        return min(free_since + patience, self.latest_start(oldest_arrived_at, size))

    def predict(self, busy_for: float, ahead_ages: Sequence[float], own: int, own_age: float = 0.0) -> Prediction:
        """A request of `own` items, `own_age` seconds since it arrived, queued now behind items aged
        `ahead_ages` (seconds, in queue order) while the device is busy `busy_for` more seconds: first come
        first served in batches of up to max_batch_size, each costed at `ForwardCost.upper`."""
        ages = [*ahead_ages, *([own_age] * own)]
        elapsed, taken, wait = busy_for, 0, None
        lateness = -math.inf
        while taken < len(ages):
            size = min(len(ages) - taken, self.max_batch_size)
            if wait is None and taken + size > len(ahead_ages):
                wait = elapsed
            end = elapsed + self.cost.upper(size)
            lateness = max(lateness, max(ages[taken:taken + size]) + end - self.budget)
            taken += size
            elapsed = end
        return Prediction(wait=busy_for if wait is None else wait, completion=elapsed, lateness=lateness)
