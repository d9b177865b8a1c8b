"""Dynamic batching: the `Batcher` (queue, deadlines, poison isolation) and its policies (admission, wait,
batch size; `policies`), the latency-target planning (`latency_target`)."""

from predictors.batching.batcher import Batcher
from predictors.batching.policies import BatchPolicy, QueueState, StaticPolicy, TargetPolicy, policy_for

__all__ = ["Batcher", "BatchPolicy", "QueueState", "StaticPolicy", "TargetPolicy", "policy_for"]
