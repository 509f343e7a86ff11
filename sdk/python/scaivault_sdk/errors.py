"""The one exception hierarchy. Every failure of a call is a `ScaiVaultError` carrying the
server's stable `code` (or `connection_error` / `timeout` when the server was not reached),
the HTTP `status`, the `request_id` to find it in the audit log, and `retry_after` when the
server said when to come back. Messages never contain secret values.

    ScaiVaultError
    ├── TransportError          connection_error, timeout (no answer: fall back, retry later)
    ├── AuthenticationError     401
    ├── AccessDeniedError       403
    ├── NotFoundError           404, 410
    ├── ConflictError           409 (cas mismatch, soft-deleted, in use)
    ├── ValidationError         400, 413, 415, 422
    ├── RateLimitError          429 (`retry_after` seconds)
    └── ServiceUnavailableError 503 (sealed, unavailable)
"""

from __future__ import annotations

import math
from typing import Any, Mapping


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
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.details: dict[str, Any] = details or {}
        self.retry_after = retry_after

    @property
    def status(self) -> int | None:
        """The HTTP status (`None` when no answer came)."""
        return self.status_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status_code!r}, request_id={self.request_id!r})"


class TransportError(ScaiVaultError):
    """No answer: the server could not be reached (`connection_error`) or did not answer in
    time (`timeout`). For a read, the moment to fall back to environment variables. For a
    change, `maybe_applied` says whether the request may have reached the server (then the
    change may have happened: look before doing it again)."""

    def __init__(self, code: str, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(code, message)
        self.maybe_applied = maybe_applied


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


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds, when the server sent a number."""
    value = headers.get("retry-after")
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    # A negative, infinite or NaN wait is no instruction.
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def from_response(status: int, body: Any, headers: Mapping[str, str]) -> ScaiVaultError:
    """The exception for an error answer."""
    err = body.get("error", {}) if isinstance(body, dict) else {}
    code = err.get("code") or f"http_{status}"
    message = err.get("message") or "request failed"
    cls = _BY_STATUS.get(status, ScaiVaultError)
    return cls(
        code,
        message,
        status_code=status,
        request_id=err.get("request_id") or headers.get("x-request-id"),
        details=err.get("details") or {},
        retry_after=retry_after_seconds(headers),
    )
