"""ScaiVault's Python client: `ScaiVaultClient` (sync or awaited) and `SyncScaiVaultClient`."""

from ._client import USER_AGENT, ScaiVaultClient, SyncScaiVaultClient, __version__
from .errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ScaiVaultError,
    ServiceUnavailableError,
    ValidationError,
)
from .models import BatchMetadata, BatchResult, Secret, SecretInfo, SecretMetadata, SecretType, WriteResult

__all__ = [
    "USER_AGENT",
    "AccessDeniedError",
    "AuthenticationError",
    "BatchMetadata",
    "BatchResult",
    "ConflictError",
    "NotFoundError",
    "RateLimitError",
    "ScaiVaultClient",
    "ScaiVaultError",
    "Secret",
    "SecretInfo",
    "SecretMetadata",
    "SecretType",
    "ServiceUnavailableError",
    "SyncScaiVaultClient",
    "ValidationError",
    "WriteResult",
    "__version__",
]
