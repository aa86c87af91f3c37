"""Hypothesis settings profiles: ``ci`` (derandomised, bounded), ``dev``, ``nightly``.

Select one with pytest's ``--hypothesis-profile NAME`` or ``HYPOTHESIS_PROFILE``;
the default is ``ci`` when the ``CI`` environment variable is set, else ``dev``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "nightly", max_examples=5000, deadline=None, suppress_health_check=_SLOW_OK
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
