"""Tagging a request (ingress/tagging.py): sources, precedence, merging and every limit."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from meterline.ingress.errors import BadRequest
from meterline.ingress.tagging import Attribution, take_attribution


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.encode(), v.encode()) for k, v in pairs])


def gateway_body(**gateway: Any) -> dict[str, Any]:
    return {"model": "p/m", "providerOptions": {"gateway": gateway}}


def test_nothing_given_means_no_user_and_no_tags() -> None:
    assert take_attribution({"model": "p/m"}, headers()) == Attribution(None, [])


def test_body_user_and_tags_are_read_and_provider_options_removed() -> None:
    body = gateway_body(user="acct_1", tags=["plan:pro", "feature:chat"])
    body["providerOptions"]["other"] = {"kept": False}
    assert take_attribution(body, headers()) == Attribution("acct_1", ["feature:chat", "plan:pro"])
    assert body == {"model": "p/m"}


def test_standard_user_field_sets_the_user_and_stays_in_the_body() -> None:
    body = {"model": "p/m", "user": "u-42"}
    assert take_attribution(body, headers()).user == "u-42"
    assert body["user"] == "u-42"


def test_standard_user_field_is_ignored_where_the_surface_has_none() -> None:
    assert take_attribution({"user": "u-42"}, headers(), standard_user=False).user is None


def test_gateway_user_wins_over_the_standard_user_field() -> None:
    body = gateway_body(user="gateway-user")
    body["user"] = "standard-user"
    assert take_attribution(body, headers()).user == "gateway-user"


def test_user_header_replaces_every_body_user() -> None:
    body = gateway_body(user="gateway-user")
    body["user"] = "standard-user"
    assert take_attribution(body, headers(("ai-reporting-user", "from-header"))).user == (
        "from-header"
    )


def test_empty_users_count_as_none() -> None:
    body = gateway_body(user="")
    body["user"] = "standard-user"
    assert take_attribution(body, headers(("ai-reporting-user", "  "))).user == "standard-user"


def test_header_tags_merge_with_body_tags_sorted_without_duplicates() -> None:
    body = gateway_body(tags=["b", "a", "b"])
    found = take_attribution(body, headers(("ai-reporting-tags", "c, a ,d,")))
    assert found.tags == ["a", "b", "c", "d"]


def test_repeated_tag_headers_all_count() -> None:
    found = take_attribution({}, headers(("ai-reporting-tags", "a,b"), ("ai-reporting-tags", "c")))
    assert found.tags == ["a", "b", "c"]


def test_ten_tags_after_merging_is_allowed() -> None:
    body = gateway_body(tags=[f"t{n}" for n in range(6)])
    found = take_attribution(body, headers(("ai-reporting-tags", "t0,t1,h1,h2,h3,h4")))
    assert len(found.tags) == 10


def test_eleven_tags_after_merging_is_a_400() -> None:
    body = gateway_body(tags=[f"t{n}" for n in range(6)])
    with pytest.raises(BadRequest) as caught:
        take_attribution(body, headers(("ai-reporting-tags", "h1,h2,h3,h4,h5")))
    assert caught.value.status == 400
    assert "11 distinct tags" in caught.value.message
    assert "the limit is 10" in caught.value.message
    assert caught.value.code == "too_many_tags"


def test_a_tag_of_64_characters_is_allowed() -> None:
    assert take_attribution(gateway_body(tags=["x" * 64]), headers()).tags == ["x" * 64]


@pytest.mark.parametrize("tag", ["x" * 65, ""])
def test_a_body_tag_outside_1_to_64_characters_is_a_400(tag: str) -> None:
    with pytest.raises(BadRequest) as caught:
        take_attribution(gateway_body(tags=[tag]), headers())
    assert "1 to 64 characters" in caught.value.message
    assert caught.value.code == "invalid_tag"


def test_a_header_tag_longer_than_64_characters_is_a_400() -> None:
    with pytest.raises(BadRequest, match="1 to 64 characters"):
        take_attribution({}, headers(("ai-reporting-tags", "ok," + "y" * 65)))


def test_a_user_of_256_characters_is_allowed() -> None:
    assert take_attribution(gateway_body(user="u" * 256), headers()).user == "u" * 256


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (gateway_body(user="u" * 257), None),
        ({"user": "u" * 257}, None),
        ({}, "u" * 257),
    ],
)
def test_a_user_longer_than_256_characters_is_a_400(
    body: dict[str, Any], header: str | None
) -> None:
    with pytest.raises(BadRequest) as caught:
        take_attribution(body, headers(("ai-reporting-user", header)) if header else headers())
    assert "257 characters" in caught.value.message
    assert "the limit is 256" in caught.value.message
    assert caught.value.code == "user_too_long"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"providerOptions": "x"}, "providerOptions must be an object"),
        ({"providerOptions": {"gateway": []}}, "providerOptions.gateway must be an object"),
        (gateway_body(user=7), "providerOptions.gateway.user must be a string"),
        (gateway_body(tags="a,b"), "providerOptions.gateway.tags must be an array of strings"),
        (gateway_body(tags=["a", 1]), "providerOptions.gateway.tags must be an array of strings"),
        ({"user": ["x"]}, "user must be a string"),
    ],
)
def test_wrong_types_are_a_400(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest) as caught:
        take_attribution(body, headers())
    assert needle in caught.value.message


def test_provider_options_without_gateway_are_removed_too() -> None:
    body = {"providerOptions": {"anthropic": {"x": 1}}}
    assert take_attribution(body, headers()) == Attribution()
    assert body == {}
