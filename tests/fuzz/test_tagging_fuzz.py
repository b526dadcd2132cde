"""The tagging rules (ingress/tagging.py) under arbitrary bodies and headers: either an
attribution within every limit, or a 400 naming what was wrong; never another error.
``providerOptions`` never survives into the body that goes upstream."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from meterline.common.events import MAX_TAG_LENGTH, MAX_TAGS, MAX_USER_LENGTH
from meterline.ingress.errors import BadRequest
from meterline.ingress.tagging import PROVIDER_OPTIONS, TAGS_HEADER, USER_HEADER, take_attribution
from tests.fuzz.settings import FUZZ

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda children: (
        st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
TAG = st.text(max_size=70)
# What a client can put in a header: Starlette decodes header bytes as latin-1.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)


@st.composite
def gateway_options(draw: st.DrawFn) -> Any:
    """Mostly the right shape, sometimes any JSON at any level."""
    tags = draw(st.lists(TAG, max_size=14) | JSON)
    user = draw(st.none() | st.text(max_size=300) | JSON)
    gateway = draw(st.just({"tags": tags, "user": user}) | JSON)
    return draw(st.just({"gateway": gateway}) | JSON)


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], Headers]:
    body: dict[str, Any] = {"model": "p/m", "messages": []}
    if draw(st.booleans()):
        body[PROVIDER_OPTIONS] = draw(gateway_options())
    if draw(st.booleans()):
        body["user"] = draw(st.text(max_size=300) | JSON)
    raw: list[tuple[bytes, bytes]] = []
    for name in (TAGS_HEADER, USER_HEADER):
        for value in draw(st.lists(HEADER_TEXT, max_size=2)):
            raw.append((name.encode(), value.encode("latin-1")))
    return body, Headers(raw=raw)


@settings(FUZZ, max_examples=120)
@given(requests())
def test_any_request_gives_an_attribution_within_limits_or_a_400(
    request: tuple[dict[str, Any], Headers],
) -> None:
    body, headers = request
    try:
        attribution = take_attribution(body, headers)
    except BadRequest as error:
        assert error.status == 400
        assert error.param and error.message
        return
    assert PROVIDER_OPTIONS not in body
    assert len(attribution.tags) <= MAX_TAGS
    assert attribution.tags == sorted(set(attribution.tags))
    assert all(1 <= len(tag) <= MAX_TAG_LENGTH for tag in attribution.tags)
    assert attribution.user is None or 1 <= len(attribution.user) <= MAX_USER_LENGTH


PLAIN_TAG = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    min_size=1,
    max_size=MAX_TAG_LENGTH,
)


@settings(FUZZ, max_examples=100)
@given(
    st.lists(PLAIN_TAG, max_size=12),
    st.lists(PLAIN_TAG, max_size=12),
    st.none() | st.text(min_size=1, max_size=MAX_USER_LENGTH),
    st.none() | PLAIN_TAG,
    st.none() | st.text(min_size=1, max_size=MAX_USER_LENGTH),
)
def test_body_and_header_tags_merge_and_the_user_header_wins(
    body_tags: list[str],
    header_tags: list[str],
    body_user: str | None,
    header_user: str | None,
    standard_user: str | None,
) -> None:
    body: dict[str, Any] = {PROVIDER_OPTIONS: {"gateway": {"tags": body_tags, "user": body_user}}}
    if standard_user is not None:
        body["user"] = standard_user
    raw = [(TAGS_HEADER.encode(), ", ".join(header_tags).encode())] if header_tags else []
    if header_user is not None:
        raw.append((USER_HEADER.encode(), header_user.encode()))
    merged = sorted(set(body_tags) | set(header_tags))
    try:
        attribution = take_attribution(body, Headers(raw=raw))
    except BadRequest as error:
        assert len(merged) > MAX_TAGS
        assert error.code == "too_many_tags"
        return
    assert len(merged) <= MAX_TAGS
    assert attribution.tags == merged
    assert attribution.user == (header_user or body_user or standard_user)
    assert body.get("user") == standard_user  # the standard field is OpenAI's: it stays
