"""The fuzz tests' Hypothesis settings: small budgets, so the whole directory runs in well
under a minute, and derandomized, so CI runs the same examples every time (a failure
reproduces by running the test again). Each test applies them; nothing global changes."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
"""For pure functions: a second or two a test on an idle machine."""

FUZZ_HTTP = settings(FUZZ, max_examples=40)
"""For whole requests through an app: each example is a request (and maybe a query)."""
