"""vision-predictors: a KServe model server for ModelScope vision models."""

__version__ = "0.1.0"
