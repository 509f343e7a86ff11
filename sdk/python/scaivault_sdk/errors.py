"""Errors that carry the server's stable code. Messages never contain secret values."""

from __future__ import annotations

from typing import Any


class ScaiVaultError(Exception):
    """Base class: every failure of the client, including connection failures."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.details = details or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status_code={self.status_code!r}, request_id={self.request_id!r})"


class AuthenticationError(ScaiVaultError):
    """401: missing, invalid, expired or revoked token."""


class AccessDeniedError(ScaiVaultError):
    """403: scope or policy does not allow the call."""


class NotFoundError(ScaiVaultError):
    """404: the secret, version, policy or identity does not exist."""


class ValidationError(ScaiVaultError):
    """400/422: the request was malformed; field problems are in ``details['fields']``."""


class ConflictError(ScaiVaultError):
    """409: version conflict, policy in use, secret soft-deleted…"""


class RateLimitError(ScaiVaultError):
    """429: honour ``retry_after`` (seconds)."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailableError(ScaiVaultError):
    """503: sealed or temporarily unavailable."""


_BY_STATUS: dict[int, type[ScaiVaultError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AccessDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: NotFoundError,
    413: ValidationError,
    415: ValidationError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def from_response(status: int, body: Any, headers: Any) -> ScaiVaultError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    code = err.get("code") or f"http_{status}"
    message = err.get("message") or "request failed"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "request_id": err.get("request_id") or headers.get("x-request-id"),
        "details": err.get("details") or {},
    }
    cls = _BY_STATUS.get(status, ScaiVaultError)
    if cls is RateLimitError:
        retry = headers.get("retry-after")
        return RateLimitError(code, message, retry_after=float(retry) if retry else None, **kwargs)
    return cls(code, message, **kwargs)
