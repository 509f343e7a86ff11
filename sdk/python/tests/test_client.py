"""Every SDK method against the real binary, with the blocking client and awaited."""

from __future__ import annotations

import asyncio
import datetime
import inspect
from typing import Any

import pytest

from conftest import Dev, service_account
from scaivault_sdk import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ScaiVaultClient,
    ScaiVaultError,
    Secret,
    SecretType,
    SyncScaiVaultClient,
    ValidationError,
)

BILLING = "environments/production/billing"


async def w(v: Any) -> Any:
    """Awaits what the async client returns; passes through what the sync client returns."""
    return await v if inspect.isawaitable(v) else v


async def items(it: Any) -> list[Any]:
    if hasattr(it, "__aiter__"):
        return [x async for x in it]
    return list(it)


async def raises(exc: type[BaseException], v: Any) -> Any:
    with pytest.raises(exc) as info:
        await w(v() if callable(v) else v)
    return info.value


async def scenario(client: Any, dev: Dev) -> None:
    s = client.secrets
    r = await w(s.write(path=f"{BILLING}/stripe", data={"secret_key": "sk_live_1"}, secret_type="api_key",
                        metadata={"tags": ["billing"], "owner": "team:payments"}, max_versions=5))
    assert (r.version, r.created, r.secret_type) == (1, True, SecretType.API_KEY)
    r = await w(s.write(path=f"{BILLING}/stripe", data={"secret_key": "sk_live_2"}, cas=1))
    assert (r.version, r.created) == (2, False)
    await raises(ConflictError, lambda: s.write(path=f"{BILLING}/stripe", data={"secret_key": "x"}, cas=1))
    await w(s.write(path=f"{BILLING}/database", data={"url": "postgres://db"}, expires_in="30d"))

    secret = await w(s.read(f"{BILLING}/stripe"))
    assert isinstance(secret, Secret)
    assert (secret.version, secret.data["secret_key"], secret.secret_type) == (2, "sk_live_2", SecretType.API_KEY)
    assert secret.metadata.tags == ["billing"] and secret.metadata.owner == "team:payments"
    assert "sk_live_2" not in repr(secret), "a secret value reached repr()"
    assert (await w(s.read(f"{BILLING}/stripe", version=1))).data["secret_key"] == "sk_live_1"
    db = await w(s.read(f"{BILLING}/database"))
    assert db.expires_at is not None

    listed = await items(s.list(prefix=f"{BILLING}/", page_size=1))
    assert [x.path for x in listed] == [f"{BILLING}/database", f"{BILLING}/stripe"], "every page"
    versions = await w(s.versions(f"{BILLING}/stripe"))
    assert [v["version"] for v in versions] == [1, 2]
    meta = await w(s.read_metadata(f"{BILLING}/stripe"))
    assert (meta.version, meta.version_count) == (2, 2)
    meta = await w(s.update_metadata(f"{BILLING}/stripe", {"description": "Stripe live key", "owner": None}))
    assert meta.metadata.description == "Stripe live key" and meta.metadata.owner is None and meta.version == 2

    batch = await w(s.batch_read([f"{BILLING}/stripe", f"{BILLING}/missing"], include_metadata=True))
    assert batch.secrets[f"{BILLING}/stripe"].data["secret_key"] == "sk_live_2"
    assert batch.errors[f"{BILLING}/missing"]["code"] == "secret_not_found"
    meta_batch = await w(s.batch_metadata([f"{BILLING}/**"], expand_wildcards=True))
    assert f"{BILLING}/stripe" in meta_batch.secrets and not meta_batch.errors
    assert meta_batch.secrets[f"{BILLING}/stripe"].version == 2
    assert "sk_live" not in repr(meta_batch)

    deleted = await w(s.delete(f"{BILLING}/database"))
    assert deleted["recoverable_until"]
    err = await raises(NotFoundError, lambda: s.read(f"{BILLING}/database"))
    assert err.code == "secret_not_found" and err.status_code == 404 and err.request_id.startswith("req_")
    await w(s.restore(f"{BILLING}/database"))
    assert (await w(s.read(f"{BILLING}/database"))).data["url"] == "postgres://db"
    await w(s.delete(f"{BILLING}/database", permanent=True))
    await raises(NotFoundError, lambda: s.restore(f"{BILLING}/database"))

    err = await raises(ValidationError, lambda: s.write(path="Bad/Path", data={"k": "v"}))
    assert err.code == "invalid_path"
    err = await raises(ValidationError, lambda: s.write(path="a/b", data={"k": {"nested": 1}}, secret_type="kv"))
    assert err.code == "validation_error" and "fields" in err.details

    # Policies.
    p = client.policies
    pol = await w(p.create("billing-reader", [{"path_pattern": f"{BILLING}/**", "permissions": ["read"]}], description="d"))
    assert pol["id"].startswith("pol_")
    assert any(x["name"] == "billing-reader" for x in await w(p.list()))
    assert (await w(p.get(pol["id"])))["rules"][0]["path_pattern"] == f"{BILLING}/**"
    assert (await w(p.update(pol["id"], description="updated")))["description"] == "updated"
    dev.cli("identity", "create", "sa:billing-prod")
    b = await w(p.bind(pol["id"], "sa:billing-prod", identity_type="service_account"))
    assert [x["id"] for x in await w(p.bindings(pol["id"]))] == [b["id"]]
    t = await w(p.test("sa:billing-prod", f"{BILLING}/stripe", "read"))
    assert t["allowed"] is True and t["policy_id"] == pol["id"] and t["rule_index"] == 0
    t = await w(p.test("sa:billing-prod", "environments/production/reporting/db", "read"))
    assert t["allowed"] is False and t["code"] == "access_denied"
    await raises(ConflictError, lambda: p.delete(pol["id"]))
    await w(p.unbind(pol["id"], b["id"]))
    await w(p.delete(pol["id"]))

    # Auth, audit, rotation.
    who = await w(client.auth.whoami())
    assert who["identity_id"] == "user:root" and "admin" in who["scopes"]
    logs = await items(client.audit.query(action="read", path_prefix=f"{BILLING}/", page_size=2))
    assert len(logs) >= 3 and all(e["action"] == "read" for e in logs)
    assert all("sk_live" not in str(e) for e in logs), "a value reached the audit log"
    assert any(e["user_agent"].startswith("scaivault-python/") for e in logs)
    assert (await w(client.audit.verify()))["ok"] is True
    assert (await w(client.audit.summary()))["total_events"] > 0
    reads = await w(client.audit.summary(identity_id="user:root", secret_path=f"{BILLING}/stripe"))
    assert reads["by_identity"] == {"user:root": reads["total_events"]} and reads["total_events"] >= 1
    assert set(reads["by_path"]) == {f"{BILLING}/stripe"}
    later = await w(client.audit.summary(from_=datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc)))
    assert later["total_events"] == 0
    r = client.rotation
    pol = await w(r.create_policy("sdk-weekly", "7d", grace_period="24h", auto_generate=True))
    assert pol["id"] == "rot_sdk-weekly"
    assert any(p["id"] == "rot_sdk-weekly" for p in await w(r.list_policies()))
    await w(s.write(path="app/rotated", data={"value": "v1"}, rotation_policy_id="rot_sdk-weekly"))
    rotated = await w(r.rotate("rot_sdk-weekly", secret_path="app/rotated"))
    assert rotated["rotated"][0]["new_version"] == 2
    assert (await w(s.read("app/rotated"))).data["value"] != "v1"
    err = await raises(NotFoundError, lambda: r.rotate("rot_nope"))
    assert err.code == "rotation_policy_not_found"
    # One secret, by its own policy, through `secrets` (the secrets:rotate scope suffices).
    again = await w(s.rotate("app/rotated"))
    assert (again["policy_id"], again["rotated"][0]["new_version"]) == ("rot_sdk-weekly", 3)
    assert (await w(s.read("app/rotated"))).version == 3
    await w(s.write(path=f"{BILLING}/cert", data={"pem": "x"}, expires_in="30d"))
    soon = await w(s.expiring(days=60, prefix=f"{BILLING}/"))
    assert [e["path"] for e in soon["secrets"]] == [f"{BILLING}/cert"], soon
    assert soon["secrets"][0]["days_remaining"] in (29, 30) and soon["truncated"] is False

    sub = client.subscriptions
    feed = await w(sub.create("billing-feed", [f"{BILLING}/**"], ["secret.*"]))
    assert (feed["identity_id"], feed["delivery"]["type"], feed["status"]) == ("user:root", "polling", "active")
    assert [f["id"] for f in await w(sub.list())] == [feed["id"]]
    await w(s.write(path=f"{BILLING}/stripe", data={"secret_key": "sk_live_3"}))
    got = await w(sub.poll(feed["id"], timeout=5))
    assert [(e["event_type"], e["path"]) for e in got["events"]] == [("secret.updated", f"{BILLING}/stripe")], got
    assert "sk_live" not in str(got) and got["has_more"] is False
    assert (await w(sub.ack(feed["id"], [e["event_id"] for e in got["events"]])))["acknowledged"] == 1
    assert (await w(sub.get(feed["id"])))["delivery"]["buffered"] == 0
    paused = await w(sub.update(feed["id"], enabled=False))
    assert paused["status"] == "paused"
    await w(sub.delete(feed["id"]))
    err = await raises(NotFoundError, lambda: sub.get(feed["id"]))
    assert err.code == "subscription_not_found"


def test_sync_client_covers_every_method(dev: Dev) -> None:
    with SyncScaiVaultClient(base_url=dev.url, token=dev.token) as c:
        asyncio.run(scenario(c, dev))


def test_async_client_awaited_covers_every_method(dev: Dev) -> None:
    async def main() -> None:
        async with ScaiVaultClient(base_url=dev.url, token=dev.token) as c:
            await scenario(c, dev)

    asyncio.run(main())


def test_async_client_called_plainly_from_sync_code(dev: Dev) -> None:
    c = ScaiVaultClient(base_url=dev.url, token=dev.token)
    r = c.secrets.write(path="app/db", data={"password": "pw"})
    assert r.version == 1
    assert c.secrets.read("app/db").data["password"] == "pw"
    assert [x.path for x in c.secrets.list(prefix="app/")] == ["app/db"]
    assert c.auth.whoami()["identity_id"] == "user:root"
    c.close()


def test_errors_carry_codes(dev: Dev) -> None:
    sa = service_account(dev, "sa:narrow", "app/**", "read", "secrets:read")
    c = SyncScaiVaultClient(base_url=dev.url, token=sa)
    SyncScaiVaultClient(base_url=dev.url, token=dev.token).secrets.write(path="other/x", data={"k": "v"})
    with pytest.raises(AccessDeniedError) as e:
        c.secrets.read("other/x")
    assert e.value.code == "access_denied" and e.value.status_code == 403
    with pytest.raises(AccessDeniedError) as e:
        c.secrets.write(path="app/x", data={"k": "v"})
    assert e.value.code == "insufficient_scope"
    with pytest.raises(AuthenticationError) as unauthenticated:
        SyncScaiVaultClient(base_url=dev.url, token="skt_not_a_real_token").secrets.read("app/x")
    assert unauthenticated.value.code == "token_invalid"
    dead = SyncScaiVaultClient(base_url="http://127.0.0.1:9", token="skt_x", retries=1, backoff=0.01)
    with pytest.raises(ScaiVaultError) as unreachable:
        dead.secrets.read("app/x")
    assert unreachable.value.code == "connection_error"


def test_rate_limits_are_retried_then_raised(limited_dev: Dev) -> None:
    # Policy operations allow 1 per minute here; the client retries honouring Retry-After, so
    # give it no retries to see the error.
    c = SyncScaiVaultClient(base_url=limited_dev.url, token=limited_dev.token, retries=0)
    c.policies.list()
    with pytest.raises(RateLimitError) as e:
        c.policies.list()
    assert e.value.code == "rate_limited" and e.value.retry_after and e.value.retry_after >= 1


def test_client_credentials_fetch_and_refresh_tokens(dev: Dev) -> None:
    dev.cli("identity", "create", "sa:svc")
    dev.cli("policies", "create", "svc", "--rule", "svc/**:read")
    dev.cli("policies", "bind", "svc", "--identity-id", "sa:svc")
    import json

    cred = json.loads(dev.cli("identity", "credentials", "sa:svc", "--scope", "secrets:read", "--json"))
    SyncScaiVaultClient(base_url=dev.url, token=dev.token).secrets.write(path="svc/key", data={"k": "v"})
    c = SyncScaiVaultClient(base_url=dev.url, client_id=cred["client_id"], client_secret=cred["client_secret"])
    assert c.secrets.read("svc/key").data["k"] == "v"
    tokens = c._transport.tokens
    first = tokens.token
    tokens.expires = 0  # as if the hour had passed
    assert c.secrets.read("svc/key").data["k"] == "v"
    assert tokens.token != first, "the token was not refreshed before expiry"
    assert cred["client_secret"] not in repr(c)
    with pytest.raises(AuthenticationError) as e:
        SyncScaiVaultClient(base_url=dev.url, client_id="sa:svc", client_secret="scs_wrong").secrets.read("svc/key")
    assert e.value.code == "invalid_credentials"


def test_client_credentials_are_listed_and_revoked_through_the_cli_and_the_sdk(dev: Dev) -> None:
    import json

    dev.cli("identity", "create", "sa:ci")
    admin = SyncScaiVaultClient(base_url=dev.url, token=dev.token)
    first = admin.auth.create_credential("sa:ci", ["secrets:read"])
    second = json.loads(dev.cli("identity", "credentials", "sa:ci", "--scope", "secrets:list", "--json"))
    listed = admin.auth.list_credentials("sa:ci")["credentials"]
    assert [c["credential_id"] for c in listed] == [first["credential_id"], second["credential_id"]]
    assert first["client_secret"] not in json.dumps(listed)
    table = dev.cli("identity", "list-credentials", "sa:ci")
    assert first["credential_id"] in table and "secrets:list" in table
    svc = SyncScaiVaultClient(base_url=dev.url, client_id="sa:ci", client_secret=first["client_secret"])
    assert svc.auth.whoami()["identity_id"] == "sa:ci"
    # Revoked through the SDK: the secret stops working, the other credential does not.
    out = admin.auth.revoke_credential("sa:ci", first["credential_id"])
    assert out["revoked"] is True and out["tokens_revoked"] == 1
    with pytest.raises(AuthenticationError):
        SyncScaiVaultClient(base_url=dev.url, client_id="sa:ci", client_secret=first["client_secret"]).auth.whoami()
    other = SyncScaiVaultClient(base_url=dev.url, client_id="sa:ci", client_secret=second["client_secret"])
    assert other.auth.whoami()["identity_id"] == "sa:ci"
    # And through the CLI.
    assert "Revoked" in dev.cli("identity", "revoke-credential", "sa:ci", second["credential_id"])
    assert admin.auth.list_credentials("sa:ci")["credentials"] == []
