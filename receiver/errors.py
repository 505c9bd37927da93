"""The receiver's errors: the shared hierarchy of both HTTP apps (shared/web/errors.py),
under the names the webhook modules import."""

from shared.web.errors import (
    ApiError,
    BadRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    error_body,
    install_error_handlers,
)

__all__ = [
    "ApiError",
    "BadRequestError",
    "PayloadTooLargeError",
    "ServiceUnavailableError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "error_body",
    "install_error_handlers",
]
