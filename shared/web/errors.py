"""The exception hierarchy of both HTTP apps and the handlers that turn it into responses.

Every error a client can meet answers ``{"status": "error", "message": "...", "errors":
[...]}`` with a message that says what to fix; validation errors list in ``errors`` each
field that is wrong (``errors`` is empty otherwise).
Messages never echo the request body, keys or signatures.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.web.request_id import HEADER as REQUEST_ID_HEADER
from shared.web.request_id import current_request_id

log = structlog.get_logger(__name__)


class ApiError(Exception):
    status_code = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequestError(ApiError):
    status_code = 400


class UnauthorizedError(ApiError):
    status_code = 401


class ForbiddenError(ApiError):
    status_code = 403


class NotFoundError(ApiError):
    status_code = 404


class ConflictError(ApiError):
    """The resource is not in a state that allows the request (e.g. not open any more)."""

    status_code = 409


class PayloadTooLargeError(ApiError):
    status_code = 413


class UnsupportedMediaTypeError(ApiError):
    status_code = 415


class TooManyRequestsError(ApiError):
    """A rate limit was reached; ``Retry-After`` says how many seconds to wait."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ServiceUnavailableError(ApiError):
    """A dependency is unreachable. On the webhook: the batch is not durable, and
    Mandrill will retry, which is what we want; on the API: try again shortly."""

    status_code = 503


class FieldError(BaseModel):
    field: str = Field(examples=["query.limit"])
    message: str = Field(examples=["Input should be less than or equal to 100"])


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer (for the OpenAPI document)."""

    status: str = Field("error", examples=["error"])
    message: str = Field(examples=["what happened, and what to do about it"])
    errors: list[FieldError] = Field(default_factory=list)


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"status": "error", "message": message, "errors": errors or []}


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.message), status_code=exc.status_code, headers=exc.headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(part) for part in error.get("loc", ())), "message": error["msg"]}
        for error in exc.errors()
    ]
    fields = ", ".join(error["field"] for error in errors)
    return JSONResponse(error_body(f"invalid request: check {fields}", errors), status_code=422)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("request.failed", error_type=type(exc).__name__, exc_info=exc)
    # The exception escapes the request-id middleware's header hook, so set it here.
    return JSONResponse(
        error_body("internal error; the request id in X-Request-ID identifies it in the logs"),
        status_code=500,
        headers={REQUEST_ID_HEADER: current_request_id()},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
