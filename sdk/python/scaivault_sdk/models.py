"""Typed results. Secret values are excluded from ``repr`` so they never reach a log line."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class SecretType(str, enum.Enum):
    KV = "kv"
    JSON = "json"
    CERTIFICATE = "certificate"
    SSH_KEY = "ssh_key"
    API_KEY = "api_key"


def _ts(v: Any) -> datetime | None:
    if not v:
        return None
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


@dataclass(frozen=True)
class SecretMetadata:
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    owner: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, m: dict[str, Any] | None) -> "SecretMetadata":
        m = dict(m or {})
        return cls(
            description=m.pop("description", None),
            tags=list(m.pop("tags", []) or []),
            owner=m.pop("owner", None),
            custom=m,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.custom)
        if self.description is not None:
            out["description"] = self.description
        if self.tags:
            out["tags"] = list(self.tags)
        if self.owner is not None:
            out["owner"] = self.owner
        return out


@dataclass(frozen=True)
class Secret:
    path: str
    version: int
    secret_type: SecretType
    data: dict[str, Any] = field(repr=False)
    metadata: SecretMetadata
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    rotation_policy_id: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | None = None) -> "Secret":
        return cls(
            path=d.get("path") or path or "",
            version=int(d["version"]),
            secret_type=SecretType(d.get("secret_type", "kv")),
            data=dict(d.get("data") or {}),
            metadata=SecretMetadata.from_json(d.get("metadata")),
            created_at=_ts(d.get("created_at")),
            updated_at=_ts(d.get("updated_at")),
            expires_at=_ts(d.get("expires_at")),
            rotation_policy_id=d.get("rotation_policy_id"),
        )


@dataclass(frozen=True)
class WriteResult:
    path: str
    version: int
    created: bool
    secret_type: SecretType

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "WriteResult":
        return cls(path=d["path"], version=int(d["version"]), created=bool(d.get("created")), secret_type=SecretType(d["secret_type"]))


@dataclass(frozen=True)
class SecretInfo:
    """A listing or metadata entry: everything but the value."""

    path: str
    version: int
    secret_type: SecretType
    metadata: SecretMetadata
    version_count: int = 0
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    deleted: bool = False

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SecretInfo":
        return cls(
            path=d["path"],
            version=int(d.get("version", 0)),
            secret_type=SecretType(d.get("secret_type", "kv")),
            metadata=SecretMetadata.from_json(d.get("metadata")),
            version_count=int(d.get("version_count", 0)),
            updated_at=_ts(d.get("updated_at")),
            expires_at=_ts(d.get("expires_at")),
            deleted=bool(d.get("deleted", False)),
        )


@dataclass(frozen=True)
class BatchResult:
    secrets: dict[str, Secret] = field(repr=False)
    errors: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class BatchMetadata:
    """What `secrets.batch_metadata` found: descriptions only, so nothing to hide in `repr`."""

    secrets: dict[str, SecretInfo]
    errors: dict[str, dict[str, Any]]
