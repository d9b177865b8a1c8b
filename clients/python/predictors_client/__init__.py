"""vision-predictors-client: call the vision-predictors model server in three lines.

    from predictors_client import Client
    client = Client("http://localhost:8080")
    print(client.recognize("cat.jpg").labels)
"""

from predictors_client.client import AsyncClient, Client, RetryPolicy
from predictors_client.errors import (
    ConnectionFailed,
    FaceNotFound,
    ImageTooLarge,
    InternalError,
    InvalidImage,
    InvalidInput,
    JobNotFound,
    JobsDisabled,
    JobsUnavailable,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    PredictorError,
    ServiceBusy,
    Timeout,
    UnexpectedResponse,
)
from predictors_client.jobs import Job, JobCancelled, Polling
from predictors_client.results import EnhancedFace, Entailment, Labels
from predictors_client.wire import InferResult, Tensor

__all__ = [
    "AsyncClient",
    "Client",
    "ConnectionFailed",
    "EnhancedFace",
    "Entailment",
    "FaceNotFound",
    "ImageTooLarge",
    "InferResult",
    "InternalError",
    "InvalidImage",
    "InvalidInput",
    "Job",
    "JobCancelled",
    "JobNotFound",
    "JobsDisabled",
    "JobsUnavailable",
    "Labels",
    "ModelNotFound",
    "ModelNotReady",
    "PayloadTooLarge",
    "Polling",
    "PredictorError",
    "RetryPolicy",
    "ServiceBusy",
    "Tensor",
    "Timeout",
    "UnexpectedResponse",
]
