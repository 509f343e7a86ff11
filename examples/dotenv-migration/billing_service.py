#!/usr/bin/env python3
"""A service after its migration: secrets from ScaiVault when USE_SCAIVAULT=true, environment
variables otherwise, and — while trust is earned — env vars again if the vault is unreachable
and SCAIVAULT_FALLBACK=true. It prints where each setting came from, never a value."""

from __future__ import annotations

import os
import sys

from scaivault_sdk import ScaiVaultClient, ScaiVaultError

PREFIX = "environments/production/billing"


def load_config() -> tuple[dict[str, str], str]:
    env = os.environ
    if env.get("USE_SCAIVAULT") != "true":
        return {k: env[k] for k in ("STRIPE_SECRET_KEY", "DATABASE_URL")}, "env"
    client = ScaiVaultClient(base_url=env["SCAIVAULT_URL"], token=env["SCAIVAULT_TOKEN"], retries=1, backoff=0.05)
    try:
        return {
            "STRIPE_SECRET_KEY": client.secrets.read(f"{PREFIX}/stripe_secret_key").data["value"],
            "DATABASE_URL": client.secrets.read(f"{PREFIX}/database_url").data["value"],
        }, "vault"
    except ScaiVaultError as e:
        if e.code in ("connection_error", "timeout") and env.get("SCAIVAULT_FALLBACK") == "true":
            print(f"billing: vault unreachable ({e.code}); using environment variables", file=sys.stderr)
            return {k: env[k] for k in ("STRIPE_SECRET_KEY", "DATABASE_URL")}, "env-fallback"
        raise
    finally:
        client.close()


if __name__ == "__main__":
    config, source = load_config()
    # The public setting stays in the environment on purpose.
    public_url = os.environ.get("PUBLIC_URL", "")
    print(f"billing: {len(config)} secrets from {source}; PUBLIC_URL from env ({public_url})")
