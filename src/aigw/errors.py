"""Errors as values: a status, a kind and a message, rendered by each surface in its own shape."""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    """What went wrong, independent of any vendor's vocabulary. Surfaces map these to their own
    error types; providers map their upstream's errors onto them."""

    INVALID_REQUEST = "invalid_request"  # 400
    POLICY = "policy"  # 400: a content policy (guardrail) refused the request
    AUTHENTICATION = "authentication"  # 401
    PERMISSION = "permission"  # 403
    NOT_FOUND = "not_found"  # 404
    REQUEST_TOO_LARGE = "request_too_large"  # 413
    RATE_LIMIT = "rate_limit"  # 429
    UPSTREAM_ERROR = "upstream_error"  # 502: upstream 5xx or garbage
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"  # 502: could not connect
    UPSTREAM_TIMEOUT = "upstream_timeout"  # 504
    OVERLOADED = "overloaded"  # 529 (Anthropic) / 503
    INTERNAL = "internal"  # 500


DEFAULT_STATUS = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.POLICY: 400,
    ErrorKind.AUTHENTICATION: 401,
    ErrorKind.PERMISSION: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.REQUEST_TOO_LARGE: 413,
    ErrorKind.RATE_LIMIT: 429,
    ErrorKind.UPSTREAM_ERROR: 502,
    ErrorKind.UPSTREAM_UNAVAILABLE: 502,
    ErrorKind.UPSTREAM_TIMEOUT: 504,
    ErrorKind.OVERLOADED: 529,
    ErrorKind.INTERNAL: 500,
}


class GatewayError(Exception):
    """An error the caller sees. `status` defaults from the kind; `param` names the offending request
    field; `headers` go out with the response (Retry-After, ...); `retryable` tells the router whether
    another destination may succeed where this one failed."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool = False,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or DEFAULT_STATUS[kind]
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.retryable = retryable
        self.upstream_status = upstream_status  # the upstream's HTTP status, where one answered

    def __repr__(self) -> str:
        return f"GatewayError({self.kind.value}, {self.status}, {self.message!r})"


def invalid(message: str, param: str | None = None) -> GatewayError:
    """A 400 naming the offending parameter."""
    return GatewayError(ErrorKind.INVALID_REQUEST, message, param=param)
