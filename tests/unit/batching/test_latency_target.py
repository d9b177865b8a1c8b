"""The forward-cost and duration estimates and the latency target's decisions, as plain functions of
known costs."""

from __future__ import annotations

import random

import pytest

from predictors.batching.latency_target import ForwardCost, LatencyTarget, RecentDuration

FIXED, PER_ITEM = 0.02, 0.01  # seconds: a pass of n items takes 0.02 + 0.01 n


def learnt(samples: int = 200, noise: float = 0.0, seed: int = 3) -> ForwardCost:
    rng = random.Random(seed)
    cost = ForwardCost()
    for i in range(samples):
        size = 1 + i % 8
        cost.observe(size, (FIXED + PER_ITEM * size) * (1 + rng.uniform(-noise, noise)))
    return cost


def test_the_estimate_of_exact_costs_converges_to_them() -> None:
    cost = learnt()
    assert cost.fixed == pytest.approx(FIXED, abs=1e-9)
    assert cost.per_item == pytest.approx(PER_ITEM, abs=1e-9)
    assert cost.spread < 1e-3  # the first guesses' errors have faded
    assert cost.upper(4) == pytest.approx(FIXED + 4 * PER_ITEM, rel=2e-3)


def test_the_estimate_of_noisy_costs_converges_near_them_and_knows_its_spread() -> None:
    cost = learnt(noise=0.1)
    assert cost.fixed == pytest.approx(FIXED, rel=0.25)
    assert cost.per_item == pytest.approx(PER_ITEM, rel=0.1)
    assert 0.02 < cost.spread < 0.15  # uniform +-10 %: a standard deviation of about 5.8 %
    assert cost.upper(8) > cost.seconds(8) * 1.04  # planned with a margin


def test_the_estimate_follows_a_device_that_became_slower() -> None:
    cost = learnt()
    for i in range(60):
        size = 1 + i % 8
        cost.observe(size, 2 * (FIXED + PER_ITEM * size))
    assert cost.seconds(8) == pytest.approx(2 * (FIXED + 8 * PER_ITEM), rel=0.02)


def test_one_batch_size_only_is_taken_as_all_per_item_cost() -> None:
    cost = ForwardCost()
    assert not cost.known
    for _ in range(5):
        cost.observe(4, FIXED + 4 * PER_ITEM)
    assert (cost.fixed, cost.per_item) == (0.0, pytest.approx((FIXED + 4 * PER_ITEM) / 4))
    assert cost.seconds(8) > FIXED + 8 * PER_ITEM  # bigger batches over-estimated: the safe side


def test_a_cost_that_does_not_grow_with_the_batch_is_a_constant() -> None:
    cost = ForwardCost()
    for size, seconds in [(1, 0.050), (8, 0.049), (2, 0.051), (16, 0.048)]:
        cost.observe(size, seconds)
    assert cost.per_item == 0.0 and cost.fixed == pytest.approx(0.0495, abs=1e-3)


@pytest.fixture
def target() -> LatencyTarget:
    return LatencyTarget(0.105, 8, learnt())


def test_the_size_limit_keeps_the_oldest_item_within_the_target(target: LatencyTarget) -> None:
    # 0.02 + 0.01 n <= 0.105 - age
    assert target.size_limit(0.0) == 8
    assert target.size_limit(0.04) == 4
    assert target.size_limit(0.08) == 0  # even one item would end late
    assert LatencyTarget(0.1, 8, ForwardCost()).size_limit(0.5) == 8  # nothing measured: the static bound


def test_a_batch_is_the_largest_that_keeps_every_waiting_item_in_time(target: LatencyTarget) -> None:
    assert target.batch_size([0.01] * 3) == 3  # everything waiting
    assert target.batch_size([0.0] * 20) == 8  # max_batch_size
    # the oldest allows 4 (0.04 + 0.06 <= 0.105); the other two still make it in a pass of 2 after it
    assert target.batch_size([0.04] + [0.0] * 5) == 4
    # ... but not when the two left behind would then end late (0.04 + 0.06 + 0.04): all six at once
    assert target.batch_size([0.04] * 6) == 6
    # nobody can make it whatever the order: as many as allowed (throughput first)
    assert target.batch_size([0.09] * 10) == 8


def test_a_request_that_would_make_a_batch_end_late_is_predicted_late(target: LatencyTarget) -> None:
    # the device is busy 0.03 s more; 4 fresh items wait: their pass would end at 0.03 + 0.06 = 0.09
    assert target.predict(0.03, [0.0] * 4, 1).lateness <= 0  # a 5th: 0.03 + 0.07 = 0.10, in time
    late = target.predict(0.03, [0.0] * 5, 1)  # a 6th: 0.03 + 0.08 = 0.11, 0.005 s late
    assert late.lateness == pytest.approx(0.005, abs=1e-3)
    assert late.completion == pytest.approx(0.11, abs=1e-3) and late.wait == pytest.approx(0.03, abs=1e-3)
    # behind a full batch of 8, the request waits for it: 0.03 + 0.10 + 0.03 ends it late
    behind = target.predict(0.03, [0.0] * 8, 1)
    assert behind.wait == pytest.approx(0.13, abs=1e-3) and behind.lateness > 0


def durations(values: list[float]) -> RecentDuration:
    duration = RecentDuration()
    for value in values:
        duration.observe(value)
    return duration


def test_a_recent_duration_is_a_smoothed_high_estimate() -> None:
    assert not RecentDuration().known and RecentDuration().high == 0.0
    assert durations([0.03] * 5).high == pytest.approx(0.03)  # constant: no margin
    rng = random.Random(4)
    noisy = durations([rng.uniform(0.02, 0.04) for _ in range(500)])
    assert noisy.mean == pytest.approx(0.03, abs=0.003)
    # uniform +-0.01: a mean absolute deviation of 0.005, the high estimate about 0.04
    assert 0.035 < noisy.high < 0.045
    slower = durations([0.03] * 50 + [0.06] * 50)  # it follows a change within a few dozen requests
    assert slower.mean == pytest.approx(0.06, rel=0.01)


def test_the_budget_leaves_room_for_what_follows_the_forward_pass() -> None:
    after = durations([0.02] * 3)
    target = LatencyTarget(0.105, 8, learnt(), after_forward=after)
    assert target.budget == pytest.approx(0.085)
    assert target.size_limit(0.0) == 6  # 0.02 + 0.01 n <= 0.085, not 8 as with all of 0.105 (above)
    assert target.latest_start(1.0, 2) == pytest.approx(1.0 + 0.085 - 0.04, abs=1e-4)


def test_a_batch_is_planned_for_its_oldest_item_even_when_it_is_not_the_first(target: LatencyTarget) -> None:
    # ages count from arrival, the queue from queueing: a request preprocessed longer is older behind a
    # younger one. The third item (0.04) allows a batch of 4 at most, the first alone would allow 5 (all
    # that wait): 4, and the last one after them (0.06 + 0.03 <= 0.105).
    assert target.batch_size([0.0, 0.0, 0.04, 0.0, 0.0]) == 4
    # its own age counts in a prediction: 5 items of 0.06 behind a busy device end at 0.01 + 0.07 = 0.08
    assert target.predict(0.01, [], 5, own_age=0.02).lateness <= 0
    assert target.predict(0.01, [], 5, own_age=0.04).lateness == pytest.approx(0.015, abs=1e-3)


def test_the_wait_for_an_announced_request_lasts_as_long_as_its_preprocessing() -> None:
    cost = learnt()
    waiting = LatencyTarget(1.0, 8, cost)
    assert waiting.wait_until(5.0, 5.0, 2) == pytest.approx(5.0 + FIXED, abs=1e-4)  # unknown: the fixed cost
    waiting = LatencyTarget(1.0, 8, cost, preprocess=durations([0.3] * 3))
    assert waiting.wait_until(5.0, 5.0, 2) == pytest.approx(5.3)
    # never past the last start at which a batch of 2 still ends the oldest in time
    assert waiting.wait_until(5.0, 4.2, 2) == pytest.approx(4.2 + 1.0 - (FIXED + 2 * PER_ITEM), abs=1e-4)
