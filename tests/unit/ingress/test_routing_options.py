"""Reading the routing options of ``providerOptions.gateway`` (``tagging.take_options``):
``zeroDataRetention`` and ``sort``, and the 400 that names each when it is malformed."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from meterline.ingress.errors import BadRequest
from meterline.ingress.tagging import NO_ROUTING_OPTIONS, SORTS, RoutingOptions, Sort, take_options


def options(**gateway: Any) -> RoutingOptions:
    body = {"model": "p/m", "providerOptions": {"gateway": gateway}}
    return take_options(body, Headers())[1]


def test_without_routing_options_nothing_is_required() -> None:
    assert options() is NO_ROUTING_OPTIONS
    assert options(user="u", tags=["a"]) is NO_ROUTING_OPTIONS
    assert (NO_ROUTING_OPTIONS.zero_data_retention, NO_ROUTING_OPTIONS.sort) == (False, None)


def test_zero_data_retention_is_read_as_a_boolean() -> None:
    assert options(zeroDataRetention=True).zero_data_retention is True
    assert options(zeroDataRetention=False).zero_data_retention is False
    assert options(zeroDataRetention=True, order=["a"]) == RoutingOptions(
        order=("a",), zero_data_retention=True
    )


@pytest.mark.parametrize("sort", SORTS)
def test_sort_takes_each_allowed_value(sort: Sort) -> None:
    assert options(sort=sort) == RoutingOptions(sort=sort)


@pytest.mark.parametrize(
    ("sdk_name", "sort"), [("cost", "price"), ("ttft", "latency"), ("tps", "throughput")]
)
def test_sort_takes_the_ai_sdks_typed_names(sdk_name: str, sort: Sort) -> None:
    assert options(sort=sdk_name) == RoutingOptions(sort=sort)


@pytest.mark.parametrize("value", ["true", 1, 0, [], {}])
def test_a_zero_data_retention_that_is_not_a_boolean_is_a_400_naming_it(value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        options(zeroDataRetention=value)
    assert caught.value.param == "providerOptions.gateway.zeroDataRetention"
    assert "must be a boolean" in caught.value.message


@pytest.mark.parametrize("value", ["cheapest", "Price", "", 3, True, ["price"]])
def test_an_unknown_sort_is_a_400_listing_the_allowed_values(value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        options(sort=value)
    assert caught.value.param == "providerOptions.gateway.sort"
    assert (
        "must be one of 'price', 'latency', 'throughput', 'cost', 'ttft', 'tps'"
        in caught.value.message
    )
