"""Each API call described once (`Call`), whichever client runs it.

A `Call[T]` says what to send, how to read the answer into a `T`, and whether sending it twice
could do something twice: the transports retry only calls that cannot (`safe_to_retry`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar
from urllib.parse import quote

from .models import (
    Acknowledged,
    AuditEntry,
    AuditSummary,
    AuditVerification,
    BatchMetadata,
    BatchResult,
    Binding,
    CredentialList,
    CredentialRevoked,
    Deletion,
    ExpiringSecrets,
    IssuedCredential,
    Page,
    Policy,
    PolicyDecision,
    PolicySummary,
    PollResult,
    RotateResult,
    RotationAssignment,
    RotationPolicy,
    Secret,
    SecretInfo,
    SecretMetadata,
    SecretRotation,
    Subscription,
    VersionEntry,
    Whoami,
    WriteResult,
)

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 (an item of a page)


def _same(d: Any) -> Any:
    return d


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T] = _same
    params: dict[str, Any] | None = None
    json: Any = None
    auth: bool = True
    # Sending it again cannot apply it twice, nor make a done change look failed: reads, and
    # writes with an idempotency key. The others are sent once.
    safe_to_retry: bool = True
    idempotency_key: str | None = None
    # The secret whose current version this call reads (the cache may answer it) …
    reads: str | None = None
    # … or changes (its cached copy is dropped once the call succeeds).
    changes: str | None = None
    # Seconds the server may hold the answer back by design (a long-poll's wait): added to
    # the client's timeout, which is for the vault's own work.
    wait: float = 0.0


@dataclass(frozen=True)
class Pages(Generic[I]):
    """A listing: `make(cursor)` is the call for one page."""

    make: Callable[[str | None], Call[Page[I]]]


# `Call.changes` for a call that may change any secret.
ALL = "*"


def _checked_key(key: str | None) -> str | None:
    """An idempotency key as the server takes it: 1 to 255 visible ASCII characters."""
    if key is not None and not (0 < len(key) <= 255 and all(33 <= ord(c) <= 126 for c in key)):
        raise ValueError("idempotency_key must be 1 to 255 visible ASCII characters (a UUID, say)")
    return key


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON fields without the ones left unset."""
    return {k: v for k, v in fields.items() if v is not None}


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters: unset ones dropped, booleans as the server reads them."""
    return {k: (("true" if v else "false") if isinstance(v, bool) else v) for k, v in _clean(params).items()}


def _p(path: str) -> str:
    """A secret path in a URL: its segments escaped, its slashes kept."""
    return quote(path.strip("/"), safe="/")


def _seg(value: str) -> str:
    return quote(value, safe="")


def _page(key: str, item: Callable[[Any], I]) -> Callable[[Any], Page[I]]:
    def parse(d: Any) -> Page[I]:
        return Page(items=[item(x) for x in d.get(key, [])], cursor=d.get("cursor"), has_more=bool(d.get("has_more")))

    return parse


# -- token ---------------------------------------------------------------------------------
def client_credentials(client_id: str, client_secret: str) -> Call[dict[str, Any]]:
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
    return Call("POST", "/v1/auth/token", json=body, auth=False)


# -- secrets -------------------------------------------------------------------------------
def read_secret(path: str, version: int | None) -> Call[Secret]:
    return Call(
        "GET",
        f"/v1/secrets/{_p(path)}",
        params=_query({"version": version}),
        parse=lambda d: Secret.from_json(d, path=path),
        reads=path if version is None else None,
    )


def write_secret(
    path: str,
    data: dict[str, Any],
    secret_type: str | None,
    metadata: SecretMetadata | dict[str, Any] | None,
    max_versions: int | None,
    expires_in: str | None,
    rotation_policy_id: str | None,
    cas: int | None,
    idempotency_key: str | None,
) -> Call[WriteResult]:
    body: dict[str, Any] = {"data": data}
    if secret_type is not None:
        body["secret_type"] = str(secret_type)
    if metadata is not None:
        body["metadata"] = metadata.to_json() if isinstance(metadata, SecretMetadata) else metadata
    options = _clean({"max_versions": max_versions, "expires_in": expires_in, "rotation_policy_id": rotation_policy_id, "cas": cas})
    if options:
        body["options"] = options
    return Call(
        "PUT",
        f"/v1/secrets/{_p(path)}",
        json=body,
        parse=WriteResult.from_json,
        # The server answers a repeated key with the first write's result: retrying is safe.
        idempotency_key=_checked_key(idempotency_key) or uuid.uuid4().hex,
        changes=path,
    )


def list_secrets(prefix: str, page_size: int) -> Pages[SecretInfo]:
    return Pages(
        lambda cursor: Call(
            "GET",
            "/v1/secrets",
            params=_query({"prefix": prefix, "limit": page_size, "cursor": cursor}),
            parse=_page("secrets", SecretInfo.from_json),
        )
    )


def secret_versions(path: str) -> Call[list[VersionEntry]]:
    return Call("GET", f"/v1/versions/{_p(path)}", parse=lambda d: list(d["versions"]))


def delete_secret(path: str, permanent: bool) -> Call[Deletion]:
    # Sent once: a resend after a lost answer would answer "not found" for a delete that
    # happened.
    return Call(
        "DELETE", f"/v1/secrets/{_p(path)}", params=_query({"permanent": permanent or None}),
        safe_to_retry=False, changes=path,
    )


def restore_secret(path: str) -> Call[SecretInfo]:
    return Call("POST", f"/v1/restore/{_p(path)}", parse=SecretInfo.from_json, safe_to_retry=False, changes=path)


def read_metadata(path: str) -> Call[SecretInfo]:
    return Call("GET", f"/v1/metadata/{_p(path)}", parse=SecretInfo.from_json)


def update_metadata(path: str, metadata: dict[str, Any]) -> Call[SecretInfo]:
    return Call("PATCH", f"/v1/metadata/{_p(path)}", json={"metadata": metadata}, parse=SecretInfo.from_json, changes=path)


def batch_read(paths: list[str], include_metadata: bool, version: int | None) -> Call[BatchResult]:
    def parse(d: dict[str, Any]) -> BatchResult:
        return BatchResult(
            secrets={p: Secret.from_json(s, path=p) for p, s in d.get("secrets", {}).items()},
            errors=d.get("errors", {}),
        )

    options = _clean({"include_metadata": include_metadata or None, "version": version})
    return Call("POST", "/v1/secrets/batch", json={"paths": list(paths), "options": options}, parse=parse)


def batch_metadata(paths: list[str], expand_wildcards: bool) -> Call[BatchMetadata]:
    def parse(d: dict[str, Any]) -> BatchMetadata:
        return BatchMetadata(
            secrets={p: SecretInfo.from_json(s) for p, s in d.get("secrets", {}).items()},
            errors=d.get("errors", {}),
        )

    body = {"paths": list(paths), "expand_wildcards": expand_wildcards}
    return Call("POST", "/v1/secrets/batch/metadata", json=body, parse=parse)


def rotate_secret(path: str) -> Call[RotateResult]:
    # Rotating is not idempotent: a lost answer is reported, never resent.
    return Call("POST", f"/v1/rotate/{_p(path)}", safe_to_retry=False, changes=path)


def expiring(days: int, prefix: str, limit: int | None) -> Call[ExpiringSecrets]:
    return Call("GET", "/v1/expiring", params=_query({"days": days, "prefix": prefix, "limit": limit}))


# -- policies ------------------------------------------------------------------------------
def list_policies(include_inactive: bool) -> Pages[PolicySummary]:
    return Pages(
        lambda cursor: Call(
            "GET",
            "/v1/policies",
            params=_query({"include_inactive": include_inactive or None, "limit": 1000, "cursor": cursor}),
            parse=_page("policies", _same),
        )
    )


def get_policy(policy_id: str) -> Call[Policy]:
    return Call("GET", f"/v1/policies/{_seg(policy_id)}")


def create_policy(name: str, rules: list[dict[str, Any]], description: str | None) -> Call[Policy]:
    # Sent once: a resend after a lost answer would be refused as a duplicate (409).
    return Call("POST", "/v1/policies", json=_clean({"name": name, "rules": rules, "description": description}), safe_to_retry=False)


def update_policy(policy_id: str, fields: dict[str, Any]) -> Call[Policy]:
    return Call("PATCH", f"/v1/policies/{_seg(policy_id)}", json=fields)


def delete_policy(policy_id: str, force: bool) -> Call[dict[str, Any]]:
    return Call("DELETE", f"/v1/policies/{_seg(policy_id)}", params=_query({"force": force or None}), safe_to_retry=False)


def policy_bindings(policy_id: str) -> Call[list[Binding]]:
    return Call("GET", f"/v1/policies/{_seg(policy_id)}/bindings", parse=lambda d: list(d["bindings"]))


def bind_policy(policy_id: str, identity_id: str, identity_type: str | None, expires_at: str | None) -> Call[Binding]:
    body = _clean({"identity_id": identity_id, "identity_type": identity_type, "expires_at": expires_at})
    # Binding twice would leave two bindings: never resent after a lost answer.
    return Call("POST", f"/v1/policies/{_seg(policy_id)}/bindings", json=body, safe_to_retry=False)


def unbind_policy(policy_id: str, binding_id: str) -> Call[dict[str, Any]]:
    return Call("DELETE", f"/v1/policies/{_seg(policy_id)}/bindings/{_seg(binding_id)}", safe_to_retry=False)


def test_policy(identity_id: str, path: str, permission: str, context: dict[str, Any] | None) -> Call[PolicyDecision]:
    body: dict[str, Any] = {"identity_id": identity_id, "path": path, "permission": permission}
    if context:
        body["context"] = context
    return Call("POST", "/v1/policies/test", json=body)


# -- rotation ------------------------------------------------------------------------------
def list_rotation_policies() -> Pages[RotationPolicy]:
    return Pages(
        lambda cursor: Call(
            "GET", "/v1/rotation/policies", params=_query({"limit": 1000, "cursor": cursor}), parse=_page("data", _same)
        )
    )


def create_rotation_policy(name: str, interval: str, fields: dict[str, Any]) -> Call[RotationPolicy]:
    return Call("POST", "/v1/rotation/policies", json={"name": name, "interval": interval, **fields}, safe_to_retry=False)


def rotate(policy_id: str, secret_path: str | None) -> Call[RotateResult]:
    # Rotating is not idempotent: a lost answer is reported, never resent.
    return Call(
        "POST",
        f"/v1/rotation/policies/{_seg(policy_id)}/rotate",
        json=_clean({"secret_path": secret_path}),
        safe_to_retry=False,
        # Without a path, any attached secret may change: the whole cache goes.
        changes=secret_path if secret_path else ALL,
    )


def assign_rotation(policy_id: str, secret_path: str) -> Call[RotationAssignment]:
    return Call("POST", f"/v1/rotation/policies/{_seg(policy_id)}/secrets", json={"secret_path": secret_path}, safe_to_retry=False)


def rotation_status(path: str | None) -> Call[list[SecretRotation]]:
    return Call("GET", "/v1/rotation/status", params=_query({"path": path}), parse=lambda d: list(d["secrets"]))


# -- audit ---------------------------------------------------------------------------------
def _times(filters: dict[str, Any]) -> dict[str, Any]:
    """`from_` (a keyword Python reserves) becomes `from`; datetimes become RFC 3339; a list
    of actions is comma-separated."""
    out = dict(filters)
    if "from_" in out:
        out["from"] = out.pop("from_")
    for k in ("from", "to"):
        if hasattr(out.get(k), "isoformat"):
            out[k] = out[k].isoformat().replace("+00:00", "Z")
    if isinstance(out.get("action"), (list, tuple)):
        out["action"] = ",".join(out["action"])
    return out


def audit_query(page_size: int, filters: dict[str, Any]) -> Pages[AuditEntry]:
    f = _times(filters)
    return Pages(
        lambda cursor: Call(
            "GET", "/v1/audit/logs", params=_query({**f, "limit": page_size, "cursor": cursor}), parse=_page("logs", _same)
        )
    )


def audit_summary(filters: dict[str, Any]) -> Call[AuditSummary]:
    return Call("GET", "/v1/audit/summary", params=_query(_times(filters)))


def audit_verify(fast: bool) -> Call[AuditVerification]:
    return Call("GET", "/v1/audit/verify", params=_query({"fast": fast or None}))


# -- auth ----------------------------------------------------------------------------------
def whoami() -> Call[Whoami]:
    return Call("GET", "/v1/auth/whoami")


def create_credential(identity_id: str, scopes: list[str]) -> Call[IssuedCredential]:
    # A resent request would issue a second credential nobody holds the secret of.
    return Call("POST", f"/v1/identities/{_seg(identity_id)}/credentials", json={"scopes": scopes}, safe_to_retry=False)


def list_credentials(identity_id: str) -> Call[CredentialList]:
    return Call("GET", f"/v1/identities/{_seg(identity_id)}/credentials")


def revoke_credential(identity_id: str, credential_id: str) -> Call[CredentialRevoked]:
    return Call("DELETE", f"/v1/identities/{_seg(identity_id)}/credentials/{_seg(credential_id)}", safe_to_retry=False)


# -- subscriptions -------------------------------------------------------------------------
def create_subscription(
    name: str, paths: list[str], events: list[str], delivery: dict[str, Any], filters: dict[str, Any] | None
) -> Call[Subscription]:
    body: dict[str, Any] = {"name": name, "paths": paths, "events": events, "delivery": delivery}
    if filters is not None:
        body["filters"] = filters
    # Resent after a lost answer, it would make a second subscription.
    return Call("POST", "/v1/subscriptions", json=body, safe_to_retry=False)


def list_subscriptions() -> Call[list[Subscription]]:
    return Call("GET", "/v1/subscriptions", parse=lambda d: list(d["subscriptions"]))


def get_subscription(subscription_id: str) -> Call[Subscription]:
    return Call("GET", f"/v1/subscriptions/{_seg(subscription_id)}")


def update_subscription(subscription_id: str, fields: dict[str, Any]) -> Call[Subscription]:
    # Sets fields to given values: sending it twice changes nothing more.
    return Call("PATCH", f"/v1/subscriptions/{_seg(subscription_id)}", json=fields)


def delete_subscription(subscription_id: str) -> Call[None]:
    # A resent delete answers 404 though it was done: sent once.
    return Call("DELETE", f"/v1/subscriptions/{_seg(subscription_id)}", parse=lambda _: None, safe_to_retry=False)


def poll_subscription(
    subscription_id: str, timeout: int, since_event_id: str | None, max_events: int | None
) -> Call[PollResult]:
    params = _query({"timeout": timeout, "since_event_id": since_event_id, "max_events": max_events})
    return Call("GET", f"/v1/subscriptions/{_seg(subscription_id)}/poll", params=params, wait=timeout)


def ack_subscription(subscription_id: str, event_ids: list[str]) -> Call[Acknowledged]:
    # Acknowledging twice removes nothing more.
    return Call("POST", f"/v1/subscriptions/{_seg(subscription_id)}/ack", json={"event_ids": event_ids})
