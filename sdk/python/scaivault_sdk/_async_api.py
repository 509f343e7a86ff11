"""The awaited API: `AsyncClient.secrets`, `.policies`, `.rotation`, `.audit`, `.auth`, `.subscriptions`.

Made from `_api.py` by `sdk/python/tools/unasync.py`: do not edit; edit `_api.py` and run it.
"""

from __future__ import annotations

import builtins
from typing import Any, AsyncIterator

from . import _calls as calls
from ._transport import AsyncTransport
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


class AsyncSecrets:
    """`client.secrets`: read, write, list, versions, delete, restore, metadata, batch."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    async def read(self, path: str, version: int | None = None) -> Secret:
        """The current version of the secret at `path` (or `version`). With a cache, the
        current version may come from it."""
        return await self._t.run(calls.read_secret(path, version))

    async def write(
        self,
        path: str,
        data: dict[str, Any],
        secret_type: str | None = None,
        metadata: SecretMetadata | dict[str, Any] | None = None,
        max_versions: int | None = None,
        expires_in: str | None = None,
        rotation_policy_id: str | None = None,
        cas: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Writes a new version (`created` is true for the first). `cas=N` writes only if the
        current version is N. Each call sends an `Idempotency-Key` (yours, or a fresh one), so
        a retry after a lost answer returns the first write's result instead of writing twice."""
        return await self._t.run(
            calls.write_secret(path, data, secret_type, metadata, max_versions, expires_in, rotation_policy_id, cas, idempotency_key)
        )

    def list(self, prefix: str = "", page_size: int = 100) -> AsyncIterator[SecretInfo]:
        """Every secret under `prefix` (descriptions, never values), fetched a page at a time."""
        return self._t.pages(calls.list_secrets(prefix, page_size))

    async def versions(self, path: str) -> builtins.list[VersionEntry]:
        """The retained versions of a secret, oldest first."""
        return await self._t.run(calls.secret_versions(path))

    async def delete(self, path: str, permanent: bool = False) -> Deletion:
        """Soft-deletes the secret (restorable until `recoverable_until`), or destroys it with
        `permanent=True`."""
        return await self._t.run(calls.delete_secret(path, permanent))

    async def restore(self, path: str) -> SecretInfo:
        """Brings back a soft-deleted secret."""
        return await self._t.run(calls.restore_secret(path))

    async def rotate(self, path: str) -> RotateResult:
        """Rotates the secret now, as its rotation policy says (needs `secrets:rotate` and
        `rotate` on the path). Never resent after a lost answer: check `client.rotation.status`."""
        return await self._t.run(calls.rotate_secret(path))

    async def expiring(self, days: int = 30, prefix: str = "", limit: int | None = None) -> ExpiringSecrets:
        """Secrets under `prefix` expiring within `days` (expired ones included), soonest
        first; `truncated` says more matched than `limit`."""
        return await self._t.run(calls.expiring(days, prefix, limit))

    async def read_metadata(self, path: str) -> SecretInfo:
        """Everything about a secret but its value (needs only `secrets:list`)."""
        return await self._t.run(calls.read_metadata(path))

    async def update_metadata(self, path: str, metadata: dict[str, Any]) -> SecretInfo:
        """Merges `metadata` into the secret's (a `None` value removes a key); no new version."""
        return await self._t.run(calls.update_metadata(path, metadata))

    async def batch_read(self, paths: builtins.list[str], include_metadata: bool = False, version: int | None = None) -> BatchResult:
        """Up to 100 secrets in one call: `.secrets` (path → `Secret`) and `.errors`
        (path → `{code, message}`) for the ones that could not be read."""
        return await self._t.run(calls.batch_read(paths, include_metadata, version))

    async def batch_metadata(self, paths: builtins.list[str], expand_wildcards: bool = False) -> BatchMetadata:
        """Metadata (never values) of up to 100 paths; with `expand_wildcards`, entries may be
        patterns (`billing/**`)."""
        return await self._t.run(calls.batch_metadata(paths, expand_wildcards))


class AsyncPolicies:
    """`client.policies`: access policies, bindings and the dry-run `test`."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    async def list(self, include_inactive: bool = False) -> builtins.list[PolicySummary]:
        """Every policy, all pages."""
        return await self._t.collect(calls.list_policies(include_inactive))

    async def get(self, policy_id: str) -> Policy:
        """One policy with its rules, by id or name."""
        return await self._t.run(calls.get_policy(policy_id))

    async def create(self, name: str, rules: builtins.list[dict[str, Any]], description: str | None = None) -> Policy:
        """A new policy (`pol_<name>`) from allow rules: `{"path_pattern": "billing/**",
        "permissions": ["read"], "conditions": {…}}` (there are no deny rules; an unknown field
        is refused)."""
        return await self._t.run(calls.create_policy(name, rules, description))

    async def update(self, policy_id: str, **fields: Any) -> Policy:
        """Changes the given fields (`rules`, `description`, `is_active` …)."""
        return await self._t.run(calls.update_policy(policy_id, fields))

    async def delete(self, policy_id: str, force: bool = False) -> dict[str, Any]:
        """Deletes a policy; a bound one only with `force=True`."""
        return await self._t.run(calls.delete_policy(policy_id, force))

    async def bindings(self, policy_id: str) -> builtins.list[Binding]:
        """Who the policy applies to."""
        return await self._t.run(calls.policy_bindings(policy_id))

    async def bind(self, policy_id: str, identity_id: str, identity_type: str | None = None, expires_at: str | None = None) -> Binding:
        """Applies the policy to an identity (until `expires_at`, if given)."""
        return await self._t.run(calls.bind_policy(policy_id, identity_id, identity_type, expires_at))

    async def unbind(self, policy_id: str, binding_id: str) -> dict[str, Any]:
        """Removes one binding."""
        return await self._t.run(calls.unbind_policy(policy_id, binding_id))

    async def test(self, identity_id: str, path: str, permission: str, context: dict[str, Any] | None = None) -> PolicyDecision:
        """Would `identity_id` get `permission` on `path`? Says which rule decided."""
        return await self._t.run(calls.test_policy(identity_id, path, permission, context))


class AsyncRotation:
    """`client.rotation`: rotation policies (`rot_<name>`), attachment, rotate-now, status."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    async def list_policies(self) -> builtins.list[RotationPolicy]:
        """Every rotation policy, all pages."""
        return await self._t.collect(calls.list_rotation_policies())

    async def create_policy(self, name: str, interval: str, **fields: Any) -> RotationPolicy:
        """A rotation policy rotating every `interval` (`7d`); other fields as the API takes
        them (`grace_period`, `auto_generate`, `backend`, `backend_config` …)."""
        return await self._t.run(calls.create_rotation_policy(name, interval, fields))

    async def rotate(self, policy_id: str, secret_path: str | None = None) -> RotateResult:
        """Rotates the policy's secrets now (or just `secret_path`). Never resent after a lost
        answer: check `status` instead."""
        return await self._t.run(calls.rotate(policy_id, secret_path))

    async def assign(self, policy_id: str, secret_path: str) -> RotationAssignment:
        """Attaches a secret to the policy (needs `rotate` on the secret)."""
        return await self._t.run(calls.assign_rotation(policy_id, secret_path))

    async def status(self, path: str | None = None) -> builtins.list[SecretRotation]:
        """Last and next rotation of every attached secret (or the one at `path`)."""
        return await self._t.run(calls.rotation_status(path))


class AsyncAudit:
    """`client.audit`: the audit log."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    def query(self, page_size: int = 100, **filters: Any) -> AsyncIterator[AuditEntry]:
        """Entries newest first, a page at a time: filters `from_`, `to` (datetimes or RFC
        3339), `action` (one, or a list of any), `identity_id`, `identity_type`,
        `path_prefix`, `success`, `source_ip`, `request_id`."""
        return self._t.pages(calls.audit_query(page_size, filters))

    async def summary(self, **filters: Any) -> AuditSummary:
        """Counts by action, identity, path and hour: filters `from_`, `to`, `identity_id`,
        `secret_path`."""
        return await self._t.run(calls.audit_summary(filters))

    async def verify(self, fast: bool = False) -> AuditVerification:
        """Checks the audit chain; `ok` is false with `broken_at` where it breaks."""
        return await self._t.run(calls.audit_verify(fast))


class AsyncAuth:
    """`client.auth`: who the client is, and service-account credentials."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    async def whoami(self) -> Whoami:
        """The identity, scopes and groups of the client's token."""
        return await self._t.run(calls.whoami())

    async def create_credential(self, identity_id: str, scopes: builtins.list[str]) -> IssuedCredential:
        """Issues a client credential for a service account; the secret is in the answer
        (`client_secret`) and nowhere else, ever. Needs an admin token; never resent."""
        return await self._t.run(calls.create_credential(identity_id, scopes))

    async def list_credentials(self, identity_id: str) -> CredentialList:
        """A service account's client credentials (never their secrets). Needs an admin token."""
        return await self._t.run(calls.list_credentials(identity_id))

    async def revoke_credential(self, identity_id: str, credential_id: str) -> CredentialRevoked:
        """Revokes one client credential; the tokens it minted stop working with it."""
        return await self._t.run(calls.revoke_credential(identity_id, credential_id))


class AsyncSubscriptions:
    """`client.subscriptions`: feeds of events on the paths the client's identity may read,
    long-polled and acknowledged, or sent to a webhook."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    async def create(
        self,
        name: str,
        paths: builtins.list[str],
        events: builtins.list[str],
        delivery: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> Subscription:
        """A subscription owned by the client's identity: `paths` are globs (`apps/billing/**`),
        `events` types (`secret.*`); `delivery` is `{"type": "polling", "buffer_size": N}` (the
        default) or `{"type": "webhook", "url": ..., "secret": ...}`. Needs
        `subscriptions:write`; never resent after a lost answer."""
        return await self._t.run(calls.create_subscription(name, paths, events, delivery or {"type": "polling"}, filters))

    async def list(self) -> builtins.list[Subscription]:
        """The identity's subscriptions (an admin's: every one)."""
        return await self._t.run(calls.list_subscriptions())

    async def get(self, subscription_id: str) -> Subscription:
        """One subscription, with how many events wait in its buffer."""
        return await self._t.run(calls.get_subscription(subscription_id))

    async def update(self, subscription_id: str, **fields: Any) -> Subscription:
        """Changes `name`, `paths`, `events`, `filters`, `enabled` or `delivery` (not its type)."""
        return await self._t.run(calls.update_subscription(subscription_id, fields))

    async def delete(self, subscription_id: str) -> None:
        """Deletes it and the events waiting in its buffer."""
        return await self._t.run(calls.delete_subscription(subscription_id))

    async def poll(
        self,
        subscription_id: str,
        timeout: int = 30,
        since_event_id: str | None = None,
        max_events: int | None = None,
    ) -> PollResult:
        """Waits up to `timeout` seconds (at most 60) for events, oldest first. Events stay
        until acknowledged: a poll after a crash gets them again (pass `since_event_id` to
        start after one). The client's own timeout is added to the wait."""
        return await self._t.run(calls.poll_subscription(subscription_id, timeout, since_event_id, max_events))

    async def ack(self, subscription_id: str, event_ids: builtins.list[str]) -> Acknowledged:
        """Acknowledges events: they leave the buffer and are not polled again."""
        return await self._t.run(calls.ack_subscription(subscription_id, event_ids))
