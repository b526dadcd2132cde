"""Per-million rates for tests that price with ``StaticPrices``: each token kind at its own
rate, so a cost that takes the wrong kind's rate shows."""

from __future__ import annotations

from decimal import Decimal

from meterline.common.pricing import PerMillionRates

RATES = PerMillionRates(
    input=Decimal("2"),
    output=Decimal("8"),
    cache_read=Decimal("0.5"),
    cache_write=Decimal("2.5"),
    cache_write_1h=Decimal("4"),
    input_audio=Decimal("40"),
    output_audio=Decimal("80"),
    web_search=Decimal("10000"),
)
