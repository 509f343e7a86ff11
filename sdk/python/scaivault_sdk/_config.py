"""Where a client's settings come from, as hvac reads `VAULT_ADDR`/`VAULT_TOKEN`: the
arguments, then `SCAIVAULT_URL`, `SCAIVAULT_TOKEN` and `SCAIVAULT_CACERT`, then the CLI's
saved settings (`~/.scaivault/config.json`: `url`, `token`, `ca_cert`), then the default
address. So a service started by `scaivault run` or on a machine where `scaivault auth login`
was done needs no arguments."""

from __future__ import annotations

import json
import os
import pathlib
import ssl
from dataclasses import dataclass
from typing import Any, Union

DEFAULT_URL = "http://127.0.0.1:8200"

Verify = Union[bool, str, ssl.SSLContext]


def cli_settings() -> dict[str, Any]:
    """The CLI's saved settings, or nothing when there are none."""
    path = pathlib.Path(os.environ.get("HOME") or pathlib.Path.home()) / ".scaivault" / "config.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True)
class Settings:
    base_url: str
    token: str | None
    client_id: str | None
    client_secret: str | None
    timeout: float
    retries: int
    backoff: float
    max_connections: int
    verify: Verify

    def __repr__(self) -> str:  # never the token or the client secret
        return f"Settings(base_url={self.base_url!r})"


def resolve(
    base_url: str | None,
    token: str | None,
    client_id: str | None,
    client_secret: str | None,
    timeout: float,
    retries: int,
    backoff: float,
    max_connections: int,
    verify: Verify | None,
    ca_cert: str | None,
) -> Settings:
    saved = cli_settings()
    url = base_url or os.environ.get("SCAIVAULT_URL") or saved.get("url") or saved.get("base_url") or DEFAULT_URL
    if not (client_id and client_secret):
        token = token or os.environ.get("SCAIVAULT_TOKEN") or saved.get("token")
        if not token:
            raise ValueError(
                "no token: give token= (or client_id= and client_secret=), set SCAIVAULT_TOKEN, or run `scaivault auth login`"
            )
    if timeout <= 0:
        raise ValueError("timeout must be positive (seconds)")
    chosen: Verify
    if verify is not None:
        chosen = verify
    else:
        chosen = ca_cert or os.environ.get("SCAIVAULT_CACERT") or saved.get("ca_cert") or True
    if isinstance(chosen, str):
        # A CA file: trust it (and only it) for this server, as `--ca-cert` does in the CLI.
        chosen = ssl.create_default_context(cafile=chosen)
    return Settings(
        base_url=str(url).rstrip("/"),
        token=token,
        client_id=client_id,
        client_secret=client_secret,
        timeout=float(timeout),
        retries=int(retries),
        backoff=float(backoff),
        max_connections=int(max_connections),
        verify=chosen,
    )
