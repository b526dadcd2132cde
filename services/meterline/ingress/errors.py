"""Errors the ingress answers with, in the format of the API surface that was called:
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` (the SDKs read ``message`` and
``code``) everywhere, except Anthropic's ``{"type": "error", "error": {"type", "message"}}``
under ``/v1/messages``, whose SDK reads that, and under ``/v3/ai/`` the AI SDK gateway
provider's: the same object as OpenAI's, but its ``type`` picks the error class the SDK
raises (``LANGUAGE_MODEL_ERROR_TYPES``), and a missing model's ``param`` is
``{"modelId": ...}``.

Routes raise these; one handler turns each into its status and body."""

from __future__ import annotations

import json
from typing import Final

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json.dumps(payload, ensure_ascii=False).encode()


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(message, type_, param=param, code=code),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


ANTHROPIC_SURFACE: Final = "/v1/messages"

ANTHROPIC_ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )


def anthropic_error_body(status: int, message: str) -> bytes:
    payload = {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}
    return json.dumps(payload, ensure_ascii=False).encode()


def anthropic_error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        anthropic_error_body(status, message),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


LANGUAGE_MODEL_SURFACE: Final = "/v3/ai/"

LANGUAGE_MODEL_ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "forbidden",
    404: "model_not_found",
    413: "invalid_request_error",
    424: "failed_dependency",
    429: "rate_limit_exceeded",
}
"""The types ``@ai-sdk/gateway`` turns into its error classes (``GatewayAuthenticationError``,
``GatewayModelNotFoundError`` ...); every 5xx is ``internal_server_error``."""


def language_model_error_type(status: int) -> str:
    return LANGUAGE_MODEL_ERROR_TYPES.get(
        status, "internal_server_error" if status >= 500 else "invalid_request_error"
    )


def language_model_error_body(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: object = None,
    code: str | None = None,
) -> bytes:
    error = {
        "message": message,
        "type": type_ or language_model_error_type(status),
        "param": param,
        "code": code,
    }
    return json.dumps({"error": error}, ensure_ascii=False).encode()


def language_model_error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: object = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        language_model_error_body(status, message, type_=type_, param=param, code=code),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def is_language_model_surface(path: str) -> bool:
    return path.startswith(LANGUAGE_MODEL_SURFACE)


def is_anthropic_surface(request: Request) -> bool:
    path: str = request.url.path
    return path == ANTHROPIC_SURFACE or path.startswith(ANTHROPIC_SURFACE + "/")


def refusal(path: str, status: int, message: str) -> Response:
    """An answer given before any route ran (see ``HeaderSizeLimit``), in the format of
    the surface at ``path``."""
    if path == ANTHROPIC_SURFACE or path.startswith(ANTHROPIC_SURFACE + "/"):
        return anthropic_error_response(status, message)
    if is_language_model_surface(path):
        return language_model_error_response(status, message)
    return error_response(status, message, "invalid_request_error")


class GatewayError(Exception):
    """An answer the gateway gives itself (not the provider's)."""

    status = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def response(self) -> Response:
        return error_response(
            self.status, self.message, self.type, param=self.param, code=self.code
        )

    def anthropic_response(self) -> Response:
        return anthropic_error_response(self.status, self.message)

    def language_model_response(self) -> Response:
        return language_model_error_response(
            self.status, self.message, param=self.param, code=self.code
        )


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "invalid_request_error"

    def response(self) -> Response:
        response = super().response()
        response.headers["www-authenticate"] = "Bearer"
        return response

    def anthropic_response(self) -> Response:
        response = super().anthropic_response()
        response.headers["www-authenticate"] = "Bearer"
        return response

    def language_model_response(self) -> Response:
        response = super().language_model_response()
        response.headers["www-authenticate"] = "Bearer"
        return response


class NoSuchModel(GatewayError):
    """A model no configured provider can be asked for, on the language-model surface: the
    AI SDK raises ``GatewayModelNotFoundError`` with the model's id."""

    status = 404
    type = "invalid_request_error"

    def __init__(self, message: str, model_id: str):
        super().__init__(message, param="model", code="model_not_found")
        self.model_id = model_id

    def language_model_response(self) -> Response:
        return language_model_error_response(
            self.status, self.message, param={"modelId": self.model_id}, code=self.code
        )


class QuotaExceeded(GatewayError):
    """A hard budget refused the request before it was forwarded: 402 with the reference
    gateway's code. The AI SDK's gateway provider raises it as ``GatewayForbiddenError``
    (refused by a rule), with the budget as its ``ruleId``."""

    status = 402
    type = "insufficient_quota"

    def __init__(self, message: str, budget_id: str):
        super().__init__(message, param="budget", code="quota_for_entity_exceeded")
        self.budget_id = budget_id

    def anthropic_response(self) -> Response:
        # Anthropic's error object has no code; the extra member is one its SDK keeps
        # (``error.error``) and a client can test without parsing the message.
        error = {"type": "billing_error", "message": self.message, "code": self.code}
        return Response(
            json.dumps({"type": "error", "error": error}, ensure_ascii=False).encode(),
            status_code=self.status,
            media_type="application/json",
        )

    def language_model_response(self) -> Response:
        return language_model_error_response(
            self.status,
            self.message,
            type_="forbidden",
            param={"ruleId": f"budget:{self.budget_id}"},
            code=self.code,
        )


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"


def install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, GatewayError)
        if is_anthropic_surface(request):
            return error.anthropic_response()
        if is_language_model_surface(request.url.path):
            return error.language_model_response()
        return error.response()

    async def http_error(request: Request, error: Exception) -> Response:
        # Unknown paths and wrong methods answer in the same format as everything else.
        assert isinstance(error, HTTPException)
        headers = dict(error.headers) if error.headers else None
        if is_anthropic_surface(request):
            return anthropic_error_response(error.status_code, str(error.detail), headers)
        if is_language_model_surface(request.url.path):
            # An unknown path or method is the request's fault, whatever its status.
            kind = "invalid_request_error" if error.status_code < 500 else None
            return language_model_error_response(
                error.status_code, str(error.detail), type_=kind, headers=headers
            )
        return error_response(
            error.status_code, str(error.detail), "invalid_request_error", headers=headers
        )

    async def unexpected(request: Request, error: Exception) -> Response:
        # Starlette re-raises after this answer, so the server logs the traceback once.
        if is_anthropic_surface(request):
            return anthropic_error_response(500, "internal gateway error")
        if is_language_model_surface(request.url.path):
            return language_model_error_response(500, "internal gateway error")
        return error_response(500, "internal gateway error", "server_error")

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
