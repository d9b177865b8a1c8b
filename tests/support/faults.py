"""Fault markers shared by the fault-injection tests and `tests.support.faulty_predictors`.

An image's width says which fault `FaultyClassifier` injects for it, so that one item of a batch or of a
multi-item request can be marked. Constants only: both the integration tier (which must not import
KServe) and the server process (which should not import pytest and the fixtures) read them.
"""

#: the class to name in predictor.json
FAULTY_PREDICTOR = "tests.support.faulty_predictors:FaultyClassifier"

#: image widths that trigger a fault; any other width is served normally
FORWARD_RAISES = 61
PREPARE_RAISES = 62
FINISH_RAISES = 63
FINISH_REFUSES = 64  # finish raises a PredictorError (InvalidImage): the documented 400 INVALID_IMAGE
FORWARD_SLOW = 65  # the forward pass sleeps options.slow_forward_seconds

HEALTHY_WIDTH = 96

