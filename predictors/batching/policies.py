"""Batch policies: what the `Batcher` asks about admission, waiting and batch size, and tells about time.

A policy answers, for the queue as it stands (`QueueState`): whether a request is refused beyond the
queue's bound (`refuse`), until when a partial batch waits for an announced request (`wait_until`), how
many items the next batch takes (`batch_size`), and how long a pass of a given size is predicted to run
(`pass_seconds`); it observes every forward pass's duration and a request's time before and after the
queue. `policy_for` picks the policy a model's `BatchingConfig` asks for:

- `StaticPolicy` (no latency target): a batch leaves when `max_batch_size` items wait or the first queued
  one has waited `max_latency_ms`; with `max_queue_delay_ms`, a request is refused when the queued items
  and its own, at the smoothed per-item cost of recent passes, would take longer than that.
- `TargetPolicy` (`latency_target_ms` > 0): batch size, wait and refusal follow from a target on an item's
  time from its request's arrival to its answer, planned with the measured cost of forward passes and the
  request's time around the queue: the algorithm is `predictors.batching.latency_target`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from predictors.batching.latency_target import ForwardCost, LatencyTarget, RecentDuration
from predictors.errors import ServiceBusy
from predictors.settings import BatchingConfig

#: weight of the newest batch in the static policy's per-item cost estimate
COST_SMOOTHING = 0.3


@dataclass(frozen=True)
class QueueState:
    """The queue as a policy sees it, at `now` (the batcher's clock)."""

    now: float
    #: items queued, including those whose request gave up (still in the queue until their turn)
    queued: int
    #: seconds since their request arrived, of the items still wanted, in queue order
    ages: Sequence[float]
    #: when the first queued item was queued (None: empty queue)
    first_enqueued_at: float | None
    #: when the oldest request still waiting arrived (`now` when none waits)
    oldest_arrived_at: float
    #: predicted end of the forward pass running now (None while none runs)
    running_until: float | None

    @property
    def live(self) -> int:
        return len(self.ages)


class BatchPolicy(Protocol):
    def refuse(self, model: str, queue: QueueState, count: int, spent: float) -> None:
        """Raise `ServiceBusy` if a request of `count` items, `spent` seconds after its arrival, is to be
        turned away although the queue has room for it."""

    def wait_until(self, queue: QueueState, free_since: float) -> float:
        """The batcher's clock time until which a partial batch waits for an announced request (the
        device free since `free_since`)."""

    def batch_size(self, queue: QueueState) -> int:
        """Items the next batch takes (at most; fewer when fewer are wanted)."""

    def pass_seconds(self, size: int) -> float:
        """Predicted duration of a forward pass of `size` items (0 while nothing is measured)."""

    def observe_pass(self, size: int, seconds: float) -> None: ...

    def observe_preprocess(self, seconds: float) -> None:
        """A request's time from its announcement until its items were queued."""

    def observe_after_forward(self, seconds: float) -> None:
        """A request's time from the end of its last forward pass until its answer."""


def busy(model: str, wait: float, limit: float) -> ServiceBusy:
    return ServiceBusy(f"model '{model}' would answer in about {wait:.1f} s (limit {limit:.1f} s); retry later",
                       retry_after_seconds=max(1, round(wait)))


class StaticPolicy:
    """`max_batch_size` / `max_latency_ms`, and the smoothed per-item cost for `max_queue_delay_ms`."""

    def __init__(self, config: BatchingConfig) -> None:
        self.config = config
        #: smoothed seconds per item of recent forward passes (None until the first batch)
        self.seconds_per_item: float | None = None

    def estimated_wait_seconds(self, queued: int) -> float:
        """Time until `queued` items would be done, from the measured per-item cost."""
        return 0.0 if self.seconds_per_item is None else queued * self.seconds_per_item

    def refuse(self, model: str, queue: QueueState, count: int, spent: float) -> None:
        if not self.config.max_queue_delay_ms:
            return
        limit = self.config.max_queue_delay_ms / 1000.0
        wait = self.estimated_wait_seconds(queue.queued + count)
        if wait > limit:
            raise busy(model, wait, limit)

    def wait_until(self, queue: QueueState, free_since: float) -> float:
        first = queue.now if queue.first_enqueued_at is None else queue.first_enqueued_at
        return first + self.config.max_latency_ms / 1000.0

    def batch_size(self, queue: QueueState) -> int:
        return self.config.max_batch_size

    def pass_seconds(self, size: int) -> float:
        return 0.0 if self.seconds_per_item is None else size * self.seconds_per_item

    def observe_pass(self, size: int, seconds: float) -> None:
        cost = seconds / size
        previous = self.seconds_per_item
        self.seconds_per_item = cost if previous is None else previous + COST_SMOOTHING * (cost - previous)

    def observe_preprocess(self, seconds: float) -> None:
        pass  # the static policy plans with the queue alone

    def observe_after_forward(self, seconds: float) -> None:
        pass


class TargetPolicy:
    """A latency target (`latency_target_ms`): `LatencyTarget`'s decisions on the measured costs."""

    def __init__(self, config: BatchingConfig) -> None:
        self.config = config
        #: fixed + per-item cost of a forward pass, fitted to recent batches
        self.cost = ForwardCost()
        #: a request's time from its announcement until queued, and from its forward pass's end to its answer
        self.preprocess_time = RecentDuration()
        self.after_forward_time = RecentDuration()
        self.target = LatencyTarget(config.latency_target_ms / 1000.0, config.max_batch_size, self.cost,
                                    self.preprocess_time, self.after_forward_time)

    def refuse(self, model: str, queue: QueueState, count: int, spent: float) -> None:
        if not self.config.max_queue_delay_ms:
            return
        limit = self.config.max_queue_delay_ms / 1000.0
        wait = self._predicted_wait(model, queue, count, spent)
        if wait > limit:
            raise busy(model, wait, limit)

    def _predicted_wait(self, model: str, queue: QueueState, count: int, spent: float) -> float:
        """Refuse `count` items `spent` seconds old that the target cannot take now; else their wait."""
        if queue.running_until is None and not queue.ages:
            return 0.0  # the device is idle: it starts at once, and corrects a pessimistic estimate
        if not self.cost.known:
            raise ServiceBusy(f"model '{model}' has not timed a forward pass yet and is busy; retry later")
        busy_for = max(0.0, queue.running_until - queue.now) if queue.running_until is not None else 0.0
        predicted = self.target.predict(busy_for, queue.ages, count, own_age=spent)
        if predicted.lateness > 0:
            raise ServiceBusy(
                f"model '{model}' cannot answer within its latency target of {self.target.seconds:.2f} s "
                f"(an item would be answered about {self.target.seconds + predicted.lateness:.2f} s after its "
                "arrival); retry later",
                retry_after_seconds=max(1, math.ceil(predicted.lateness)),
            )
        return predicted.wait

    def wait_until(self, queue: QueueState, free_since: float) -> float:
        return self.target.wait_until(free_since, queue.oldest_arrived_at, queue.live + 1)

    def batch_size(self, queue: QueueState) -> int:
        return self.target.batch_size(queue.ages)

    def pass_seconds(self, size: int) -> float:
        return self.cost.upper(size) if self.cost.known else 0.0

    def observe_pass(self, size: int, seconds: float) -> None:
        self.cost.observe(size, seconds)

    def observe_preprocess(self, seconds: float) -> None:
        self.preprocess_time.observe(seconds)

    def observe_after_forward(self, seconds: float) -> None:
        self.after_forward_time.observe(seconds)


def policy_for(config: BatchingConfig) -> StaticPolicy | TargetPolicy:
    return TargetPolicy(config) if config.latency_target_ms > 0 else StaticPolicy(config)
