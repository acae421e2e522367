"""Hypothesis profiles for the reader fuzz targets.

- "quick" (default, `make test`): a few derandomized examples per target, so the suite stays seconds
  long and every run tries the same inputs; no example database is written.
- "fuzz" (`make fuzz`, HYPOTHESIS_PROFILE=fuzz): FUZZ_EXAMPLES random examples per target (default
  10000; the .mat target, which starts a process per example, takes 1/80 of that), about 10 minutes for
  all targets on the 2-core dev machine; failures are saved in .hypothesis/ and replayed first next time.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("quick", max_examples=25, deadline=None,
                          derandomize=True, database=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")), deadline=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder per module, reused by every example (hypothesis runs examples inside one test call)."""
    return tmp_path_factory.mktemp("fuzz")
