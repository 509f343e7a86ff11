"""Typed results. Secret values are excluded from ``repr`` so they never reach a log line.

Secrets are dataclasses; the answers about policies, rotation, audit and identities are
`TypedDict`s (plain dicts, checked by mypy key by key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypedDict, TypeVar

from typing_extensions import NotRequired

T = TypeVar("T")


class SecretType:
    """The built-in secret types. A type is a string: plugins add their own (`acme_token`)."""

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
    secret_type: str
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
            secret_type=str(d.get("secret_type", "kv")),
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
    secret_type: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "WriteResult":
        return cls(path=d["path"], version=int(d["version"]), created=bool(d.get("created")), secret_type=str(d["secret_type"]))


@dataclass(frozen=True)
class SecretInfo:
    """A listing or metadata entry: everything but the value."""

    path: str
    version: int
    secret_type: str
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
            secret_type=str(d.get("secret_type", "kv")),
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


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, for callers that page themselves (`cursor` goes to the next)."""

    items: list[T]
    cursor: str | None
    has_more: bool


class VersionEntry(TypedDict):
    version: int
    created_at: str
    created_by: str


class Deletion(TypedDict):
    path: str
    deleted: bool
    permanent: bool
    version_count: int
    recoverable_until: NotRequired[str | None]


class PolicySummary(TypedDict):
    id: str
    name: str
    description: str
    rule_count: int
    binding_count: int
    is_active: bool
    scope: str
    created_at: str
    updated_at: str


class Policy(TypedDict, total=False):
    id: str
    name: str
    description: str
    rules: list[dict[str, Any]]
    is_active: bool
    scope: str
    created_at: str
    updated_at: str


class Binding(TypedDict, total=False):
    id: str
    policy_id: str
    identity_id: str
    identity_type: str
    expires_at: str | None
    created_at: str


class PolicyDecision(TypedDict, total=False):
    allowed: bool
    policy_id: str | None
    rule_index: int | None
    reason: str


class RotationPolicy(TypedDict, total=False):
    id: str
    name: str
    interval: str
    interval_seconds: int
    grace_period: str
    grace_period_seconds: int
    auto_generate: bool
    is_active: bool
    description: str
    backend: str | None
    backend_config: dict[str, Any]
    fields: list[str]
    secret_policy_id: str | None
    warn_before: str | None
    secrets: list[str]
    secrets_count: int
    webhook_ids: list[str]
    created_at: str
    updated_at: str


class RotateResult(TypedDict):
    policy_id: str
    rotated: list[dict[str, Any]]


class RotationAssignment(TypedDict, total=False):
    policy_id: str
    secret_path: str
    last_rotated_at: str | None
    next_rotation_at: str | None


class SecretRotation(TypedDict, total=False):
    secret_path: str
    policy_id: str
    version: int
    previous_version: int | None
    last_rotated_at: str
    next_rotation_at: str
    due: bool
    grace_until: str | None
    auto_generate: bool
    is_active: bool
    backend: str | None
    rotation: dict[str, Any] | None


class AuditEntry(TypedDict, total=False):
    id: str
    seq: int
    timestamp: str
    action: str
    success: bool
    duration_ms: int
    request_id: str
    identity_id: str | None
    identity_type: str | None
    secret_path: str | None
    source_ip: str | None
    user_agent: str | None
    extra_data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditSummary(TypedDict, total=False):
    total_events: int
    successful_events: int
    failures: int
    by_action: dict[str, int]
    by_identity: dict[str, int]
    by_path: dict[str, int]
    by_hour: dict[str, int]
    complete: bool
    first_at: str | None
    last_at: str | None


class AuditVerification(TypedDict, total=False):
    ok: bool
    verified: int
    from_seq: int
    head_seq: int
    head_hash: str
    broken_at: int | None
    problem: str | None


class Whoami(TypedDict, total=False):
    identity_id: str
    identity_type: str
    display_name: str
    tenant_id: str
    partner_id: str
    scopes: list[str]
    groups: list[str]
    roles: list[str]
    token_id: str | None
    token_expires_at: str | None


class IssuedCredential(TypedDict):
    client_id: str
    client_secret: str
    credential_id: str
    scopes: list[str]


class CredentialView(TypedDict):
    credential_id: str
    scopes: list[str]
    created_at: str


class CredentialList(TypedDict):
    client_id: str
    credentials: list[CredentialView]


class CredentialRevoked(TypedDict):
    client_id: str
    credential_id: str
    revoked: bool
    tokens_revoked: int


class ExpiringSecret(TypedDict):
    path: str
    secret_type: str
    version: int
    expires_at: str
    days_remaining: int
    expired: bool


class ExpiringSecrets(TypedDict):
    secrets: list[ExpiringSecret]
    within_days: int
    truncated: bool


class SubscriptionDelivery(TypedDict, total=False):
    type: str
    url: str
    buffer_size: int
    buffered: int


class Subscription(TypedDict, total=False):
    """A feed of events on paths its owner may read (`identity_id`), polled or sent to a
    webhook; `status` is `active`, `paused` or `failing`."""

    id: str
    name: str
    status: str
    identity_id: str
    paths: list[str]
    events: list[str]
    delivery: SubscriptionDelivery
    filters: dict[str, Any]
    enabled: bool
    created_at: str
    updated_at: str


class Event(TypedDict, total=False):
    """An event in the reference's envelope: never a secret's value."""

    event_id: str
    event_type: str
    timestamp: str
    tenant_id: str
    partner_id: str
    identity_id: str
    path: str
    data: dict[str, Any]
    request_id: str | None


class PollResult(TypedDict):
    events: list[Event]
    has_more: bool


class Acknowledged(TypedDict):
    acknowledged: int
