"""The query service's errors, and the handlers that turn them into
``{"error": {"message": ..., "type": ...}}`` with the right status.

Routes raise these; nothing else decides a status code."""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class QueryError(Exception):
    status_code = 500
    error_type = "api_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"message": self.message, "type": self.error_type}}


class BadParameter(QueryError):
    """The message always names the parameter, so a caller can fix the request."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, parameter: str, problem: str):
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {**super().body()["error"], "param": self.parameter}}


class Unauthenticated(QueryError):
    status_code = 401
    error_type = "authentication_error"


class Forbidden(QueryError):
    status_code = 403
    error_type = "permission_error"


class NotFound(QueryError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(QueryError):
    status_code = 409
    error_type = "conflict_error"


class WarehouseUnavailable(QueryError):
    status_code = 503
    error_type = "service_unavailable"


ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "description": "the parameter at fault (400 only)"},
            },
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for its OpenAPI description."""
    meaning = {
        400: "a bad parameter; the message and param name it",
        401: "missing or wrong gateway key",
        403: "the key may not do this",
        404: "not found for the caller's team",
        409: "in conflict with the configuration file",
        503: "the warehouse is unavailable",
    }
    return {
        status: {
            "description": meaning[status],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }


def _response(error: QueryError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


async def _query_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, QueryError)
    if error.status_code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, error.message)
    return _response(error)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    # FastAPI would answer 422; the contract says 400 naming the parameter.
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    location = first.get("loc", ())
    parameter = str(location[-1]) if location else "request"
    return _response(BadParameter(parameter, str(first.get("msg", "invalid value"))))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    kinds: dict[int, type[QueryError]] = {404: NotFound, 401: Unauthenticated, 403: Forbidden}
    kind = kinds.get(error.status_code)
    if kind is not None:
        return _response(kind(str(error.detail)))
    body = {"error": {"message": str(error.detail), "type": "invalid_request_error"}}
    return JSONResponse(body, status_code=error.status_code)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    # Never echo the exception: it may quote SQL or internal names.
    return _response(QueryError("internal error; the query service log has the details"))


def refusal(path: str, status: int, message: str) -> JSONResponse:
    """An answer given before any route ran (see ``HeaderSizeLimit``)."""
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error"}}, status_code=status
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QueryError, _query_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
