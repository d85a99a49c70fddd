"""The service's error hierarchy. Services raise these; ``backend.app.problems`` maps every one
of them to an RFC 9457 ``application/problem+json`` response in one place."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    status_code = 500
    slug = "internal-error"
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


class BadRequestError(APIError):
    status_code = 400
    slug = "bad-request"
    title = "Bad Request"


class UnauthorizedError(APIError):
    """No valid API key; answered with a ``WWW-Authenticate`` challenge naming ``realm``."""

    status_code = 401
    slug = "unauthorized"
    title = "Unauthorized"
    realm = "mgx-agent-api"


class ForbiddenError(APIError):
    status_code = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFoundError(APIError):
    status_code = 404
    slug = "not-found"
    title = "Not Found"


class ConflictError(APIError):
    status_code = 409
    slug = "conflict"
    title = "Conflict"


class PreconditionFailedError(APIError):
    status_code = 412
    slug = "precondition-failed"
    title = "Precondition Failed"


class PayloadTooLargeError(APIError):
    status_code = 413
    slug = "payload-too-large"
    title = "Content Too Large"


class RateLimitedError(APIError):
    """The caller's token bucket is empty; ``Retry-After`` says when the next request is accepted."""

    status_code = 429
    slug = "rate-limited"
    title = "Too Many Requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class TooManyStreamsError(APIError):
    """The caller already holds its cap of open event streams; one must close first."""

    status_code = 429
    slug = "too-many-streams"
    title = "Too Many Requests"


class UnsupportedMediaTypeError(APIError):
    status_code = 415
    slug = "unsupported-media-type"
    title = "Unsupported Media Type"


class InvalidRequestError(APIError):
    """The request is well-formed but its content cannot be accepted (HTTP 422)."""

    status_code = 422
    slug = "invalid-request"
    title = "Unprocessable Content"


class ServiceUnavailableError(APIError):
    status_code = 503
    slug = "service-unavailable"
    title = "Service Unavailable"


class FieldValidationError(InvalidRequestError):
    """Some fields are invalid; ``extra["errors"]`` lists them with their paths."""

    slug = "validation-error"
