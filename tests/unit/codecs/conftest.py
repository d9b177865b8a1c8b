"""The property-based (hypothesis) tier of the codecs: a fixed, database-free profile so CI runs are
reproducible and bounded; ``HYPOTHESIS_PROFILE=explore`` runs many more random examples locally."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# derandomize: the same examples on every run (a failure reproduces from the test name alone);
# database=None: nothing is written into the checkout; deadline=None: a shared 2-core machine stalls.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False, max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
