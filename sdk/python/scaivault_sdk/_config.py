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
    """The CLI's saved settings, or nothing when there are none. A file that is there but is
    not the CLI's settings is an error naming it (not a silent fallback)."""
    path = pathlib.Path(os.environ.get("HOME") or pathlib.Path.home()) / ".scaivault" / "config.json"
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not the CLI's settings (a JSON object): {e}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not the CLI's settings (a JSON object)")
    for key in ("url", "base_url", "token", "ca_cert"):
        if key in loaded and not isinstance(loaded[key], str):
            raise ValueError(f"{path}: `{key}` must be a string")
    return loaded


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
    # The saved settings matter only for what the arguments and environment leave open; a
    # broken file is reported when it was needed for the address or the token.
    try:
        saved, broken = cli_settings(), None
    except ValueError as e:
        saved, broken = {}, e
    url = base_url or os.environ.get("SCAIVAULT_URL") or saved.get("url") or saved.get("base_url")
    if not url and broken:
        raise broken
    url = url or DEFAULT_URL
    if not (client_id and client_secret):
        token = token or os.environ.get("SCAIVAULT_TOKEN") or saved.get("token")
        if not token and broken:
            raise broken
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
        try:
            chosen = ssl.create_default_context(cafile=chosen)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot use the CA certificate {chosen}: {e}") from None
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
