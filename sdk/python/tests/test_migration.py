"""The migration pattern: read from the vault when enabled, fall back to env vars while trust
is earned; and the bulk-import example run twice."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from conftest import Dev, ROOT, service_account
from scaivault_sdk import ScaiVaultClient, ScaiVaultError, SyncScaiVaultClient

BILLING = "environments/production/billing"


def load_config(env: dict[str, str]) -> dict[str, str]:
    """What a service's start-up code looks like after the migration."""
    if env.get("USE_SCAIVAULT") != "true":
        return {"STRIPE_SECRET_KEY": env["STRIPE_SECRET_KEY"]}
    client = ScaiVaultClient(base_url=env["SCAIVAULT_URL"], token=env["SCAIVAULT_TOKEN"], retries=1, backoff=0.01)
    try:
        secret = client.secrets.read(f"{BILLING}/stripe")
        return {"STRIPE_SECRET_KEY": secret.data["secret_key"]}
    except ScaiVaultError as e:
        if e.code in ("connection_error", "timeout") and env.get("SCAIVAULT_FALLBACK") == "true":
            return {"STRIPE_SECRET_KEY": env["STRIPE_SECRET_KEY"]}
        raise
    finally:
        client.close()


def test_load_config_reads_the_vault_and_falls_back(dev: Dev) -> None:
    SyncScaiVaultClient(base_url=dev.url, token=dev.token).secrets.write(path=f"{BILLING}/stripe", data={"secret_key": "sk_from_vault"})
    token = service_account(dev, "sa:billing-prod", f"{BILLING}/**", "read", "secrets:read")
    env = {"USE_SCAIVAULT": "true", "SCAIVAULT_URL": dev.url, "SCAIVAULT_TOKEN": token, "STRIPE_SECRET_KEY": "sk_from_env"}
    assert load_config(env)["STRIPE_SECRET_KEY"] == "sk_from_vault"
    assert load_config({**env, "USE_SCAIVAULT": "false"})["STRIPE_SECRET_KEY"] == "sk_from_env"
    down = {**env, "SCAIVAULT_URL": "http://127.0.0.1:9"}
    assert load_config({**down, "SCAIVAULT_FALLBACK": "true"})["STRIPE_SECRET_KEY"] == "sk_from_env"
    with pytest.raises(ScaiVaultError) as e:
        load_config(down)
    assert e.value.code == "connection_error"
    # The audit log shows the service's read.
    logs = list(SyncScaiVaultClient(base_url=dev.url, token=dev.token).audit.query(identity_id="sa:billing-prod"))
    assert [(x["action"], x["secret_path"], x["success"]) for x in logs] == [("read", f"{BILLING}/stripe", True)]


def test_bulk_import_example_twice(dev: Dev, tmp_path: pathlib.Path) -> None:
    fleet = ROOT / "tests" / "fixtures" / "fleet"
    script = ROOT / "examples" / "dotenv-bulk-import" / "bulk_import.py"
    env = dict(os.environ, SCAIVAULT_URL=dev.url, SCAIVAULT_TOKEN=dev.token)
    client = SyncScaiVaultClient(base_url=dev.url, token=dev.token)

    def snapshot() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for info in client.secrets.list(prefix="environments/"):
            s = client.secrets.read(info.path)
            out[info.path] = (s.version, s.data, s.metadata.tags)
        return out

    for run in (1, 2):
        r = subprocess.run([sys.executable, str(script), str(fleet), "--skip", "LOG_LEVEL"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "wrote 5 secrets"
        if run == 1:
            first = snapshot()
    second = snapshot()
    assert sorted(first) == sorted(second) and len(first) == 5, "the second run added or removed secrets"
    for path, (version, data, tags) in first.items():
        assert second[path] == (version + 1, data, tags), f"{path}: the second run changed more than the version"
    assert first["environments/production/billing/salesforce_client_secret"][1] == {"value": "sf-secret-456"}
