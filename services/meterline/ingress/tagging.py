"""Who a request is for and how it is tagged (README, "Tagging requests").

Sources, merged:

- body ``providerOptions.gateway.user`` and ``providerOptions.gateway.tags``;
- the standard Chat Completions ``user`` field (a user, when providerOptions names none);
- header ``ai-reporting-tags`` (comma-separated, merged with the body tags);
- header ``ai-reporting-user`` (replaces any user from the body).

Limits: at most 10 tags after merging, each 1..64 characters, a user up to 256 characters;
breaking one is a 400 that names it. ``providerOptions`` is the gateway's own and is removed
from the body before it goes upstream; the standard ``user`` field stays (it is OpenAI's).

The same object carries the routing options (``take_options``): ``order`` and ``only``
(provider slugs), ``models`` (fallback models, ``provider/model``), ``byok``
(request-scoped provider keys, ``{slug: [{"apiKey": ...}, ...]}``), ``zeroDataRetention``
(a boolean) and ``sort`` (``"price"``, ``"latency"`` or ``"throughput"``, or the AI SDK's
typed names for them, ``"cost"``, ``"ttft"`` and ``"tps"``). Their shape is
checked here; whether the slugs and models exist is the router's business. Error messages
about ``byok`` never quote a value: it may be a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from starlette.datastructures import Headers

from meterline.common.events import MAX_TAG_LENGTH, MAX_TAGS, MAX_USER_LENGTH
from meterline.ingress.credentials import (
    MAX_REQUEST_KEYS_PER_PROVIDER,
    Credential,
    RequestKeys,
)
from meterline.ingress.errors import BadRequest

TAGS_HEADER: Final = "ai-reporting-tags"
USER_HEADER: Final = "ai-reporting-user"
PROVIDER_OPTIONS: Final = "providerOptions"
GATEWAY: Final = f"{PROVIDER_OPTIONS}.gateway"
MAX_ROUTING_ENTRIES: Final = 16
"""Longest ``order``, ``only`` or ``models`` list: each entry may be one more upstream
attempt."""

Sort = Literal["price", "latency", "throughput"]
SORTS: Final[tuple[Sort, ...]] = get_args(Sort)
SORT_ALIASES: Final[Mapping[str, Sort]] = {"cost": "price", "ttft": "latency", "tps": "throughput"}
"""The AI SDK gateway provider's names (its ``GatewayProviderOptions.sort`` type), so code
typed against the SDK routes the same way here."""


@dataclass(frozen=True, slots=True)
class Attribution:
    user: str | None = None
    tags: list[str] = field(default_factory=list)
    """Sorted, without duplicates."""


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    order: tuple[str, ...] = ()
    """Provider slugs to try first, in this order, for a model several providers serve."""
    only: tuple[str, ...] | None = None
    """Provider slugs the request may go to; None: any."""
    models: tuple[str, ...] = ()
    """Fallback models (``provider/model``), tried after the requested one."""
    byok: RequestKeys = field(default_factory=dict)
    """Request-scoped provider keys by slug (``Credential`` hides them in any repr)."""
    zero_data_retention: bool = False
    """Only providers configured with ``zero_data_retention`` may serve the request."""
    sort: Sort | None = None
    """How to rank the providers serving a model: cheapest, fastest to the first token, or
    most output tokens per second first; None: the named provider, then configuration
    order."""


NO_ROUTING_OPTIONS: Final = RoutingOptions()


def take_attribution(
    body: dict[str, Any], headers: Headers, *, standard_user: bool = True
) -> Attribution:
    """Read the user and tags of a request and remove ``providerOptions`` from ``body``.

    ``standard_user``: whether the surface's own top-level ``user`` field counts (Chat
    Completions) or not."""
    return take_options(body, headers, standard_user=standard_user)[0]


def take_options(
    body: dict[str, Any], headers: Headers, *, standard_user: bool = True
) -> tuple[Attribution, RoutingOptions]:
    """``take_attribution``, and the routing options of the same ``providerOptions``."""
    gateway = _gateway_options(body.pop(PROVIDER_OPTIONS, None))
    return _attribution(gateway, body, headers, standard_user), _routing(gateway)


def _attribution(
    gateway: Mapping[str, object], body: dict[str, Any], headers: Headers, standard_user: bool
) -> Attribution:
    user = _user_from_header(headers)
    if user is None:
        user = _string(gateway.get("user"), f"{PROVIDER_OPTIONS}.gateway.user")
    if user is None and standard_user:
        user = _string(body.get("user"), "user")
    if user is not None and len(user) > MAX_USER_LENGTH:
        raise BadRequest(
            f"user is {len(user)} characters long; the limit is {MAX_USER_LENGTH}",
            param="user",
            code="user_too_long",
        )

    tags = set(_body_tags(gateway.get("tags")))
    tags.update(_header_tags(headers))
    for tag in tags:
        if not 1 <= len(tag) <= MAX_TAG_LENGTH:
            shown = tag if len(tag) <= 80 else tag[:80] + "..."
            raise BadRequest(
                f"tag {shown!r} is {len(tag)} characters long; each tag must be "
                f"1 to {MAX_TAG_LENGTH} characters",
                param="tags",
                code="invalid_tag",
            )
    if len(tags) > MAX_TAGS:
        raise BadRequest(
            f"{len(tags)} distinct tags after merging the body's tags with the "
            f"{TAGS_HEADER} header; the limit is {MAX_TAGS}",
            param="tags",
            code="too_many_tags",
        )
    return Attribution(user or None, sorted(tags))


ROUTING_NAMES: Final = ("order", "only", "models", "byok", "zeroDataRetention", "sort")


def _routing(gateway: Mapping[str, object]) -> RoutingOptions:
    if all(gateway.get(name) is None for name in ROUTING_NAMES):
        return NO_ROUTING_OPTIONS
    return RoutingOptions(
        order=tuple(_names(gateway.get("order"), "order") or ()),
        only=_names(gateway.get("only"), "only"),
        models=tuple(_names(gateway.get("models"), "models") or ()),
        byok=_request_keys(gateway.get("byok")),
        zero_data_retention=_zero_data_retention(gateway.get("zeroDataRetention")),
        sort=_sort(gateway.get("sort")),
    )


def _zero_data_retention(value: object) -> bool:
    param = f"{GATEWAY}.zeroDataRetention"
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{param} must be a boolean", param=param)
    return value


def _sort(value: object) -> Sort | None:
    param = f"{GATEWAY}.sort"
    if value is None:
        return None
    for sort in SORTS:
        if value == sort:
            return sort
    if isinstance(value, str) and value in SORT_ALIASES:
        return SORT_ALIASES[value]
    allowed = ", ".join(f"{sort!r}" for sort in (*SORTS, *SORT_ALIASES))
    raise BadRequest(f"{param} must be one of {allowed}", param=param)


def _names(value: object, name: str) -> tuple[str, ...] | None:
    param = f"{GATEWAY}.{name}"
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"{param} must be an array of non-empty strings", param=param)
    if len(value) > MAX_ROUTING_ENTRIES:
        raise BadRequest(
            f"{param} has {len(value)} entries; the limit is {MAX_ROUTING_ENTRIES}", param=param
        )
    return tuple(dict.fromkeys(value))  # repeats would only repeat attempts


def _request_keys(value: object) -> RequestKeys:
    param = f"{GATEWAY}.byok"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(
            f'{param} must be an object: {{"<provider>": [{{"apiKey": "..."}}, ...]}}',
            param=param,
        )
    keys: dict[str, list[Credential]] = {}
    for slug, entries in value.items():
        # The slug is the caller's own text, not a key, but it is quoted only when short.
        where = f"{param}.{slug}" if len(slug) <= 64 else param
        if not isinstance(entries, list) or not entries:
            raise BadRequest(
                f'{where} must be a non-empty array of {{"apiKey": "..."}} objects', param=where
            )
        if len(entries) > MAX_REQUEST_KEYS_PER_PROVIDER:
            raise BadRequest(
                f"{where} has {len(entries)} keys; the limit is {MAX_REQUEST_KEYS_PER_PROVIDER}",
                param=where,
            )
        for index, entry in enumerate(entries):
            api_key = entry.get("apiKey") if isinstance(entry, dict) else None
            if not isinstance(api_key, str) or not api_key.strip():
                item = f"{where}[{index}].apiKey"
                raise BadRequest(f"{item} must be a non-empty string", param=item)
            keys.setdefault(slug, []).append(Credential("byok", api_key.strip()))
    return keys


def _gateway_options(options: object) -> Mapping[str, object]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequest(f"{PROVIDER_OPTIONS} must be an object", param=PROVIDER_OPTIONS)
    gateway = options.get("gateway")
    if gateway is None:
        return {}
    if not isinstance(gateway, dict):
        raise BadRequest(
            f"{PROVIDER_OPTIONS}.gateway must be an object", param=f"{PROVIDER_OPTIONS}.gateway"
        )
    return gateway


def _string(value: object, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{param} must be a string", param=param)
    # An empty user means "no user", the same as leaving the field out.
    return value or None


def _body_tags(value: object) -> list[str]:
    param = f"{PROVIDER_OPTIONS}.gateway.tags"
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise BadRequest(f"{param} must be an array of strings", param=param)
    return value


def _header_tags(headers: Headers) -> list[str]:
    # The header may be sent more than once; every occurrence counts. Spaces after commas
    # and a trailing comma are how people write lists by hand: formatting, not empty tags.
    return [
        tag.strip()
        for value in headers.getlist(TAGS_HEADER)
        for tag in value.split(",")
        if tag.strip()
    ]


def _user_from_header(headers: Headers) -> str | None:
    value = headers.get(USER_HEADER, "").strip()
    return value or None
