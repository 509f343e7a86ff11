"""Starts the real `scaivault dev` binary for the SDK tests."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def binary() -> str:
    path = os.environ.get("SCAIVAULT_BIN") or str(ROOT / "target" / "debug" / "scaivault")
    if not os.path.exists(path):
        pytest.fail(f"no scaivault binary at {path}: run `cargo build` or set SCAIVAULT_BIN")
    return path


class Dev:
    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [binary(), "dev", "--listen", "127.0.0.1:0", "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        info = json.loads(line)
        self.url: str = info["url"]
        self.token: str = info["root_token"]

    def cli(self, *args: str, token: str | None = None) -> str:
        env = dict(os.environ, SCAIVAULT_URL=self.url, SCAIVAULT_TOKEN=token or self.token, HOME=str(ROOT / "target"))
        return subprocess.run([binary(), *args], env=env, check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def dev() -> Iterator[Dev]:
    d = Dev()
    yield d
    d.stop()


@pytest.fixture
def limited_dev() -> Iterator[Dev]:
    d = Dev("--rate-limit-multiplier", "0.02")
    yield d
    d.stop()


def service_account(dev: Dev, sa: str, pattern: str, perms: str, scopes: str) -> str:
    """Identity + policy + binding + token, through the CLI."""
    name = sa.split(":")[1] + "-policy"
    dev.cli("identity", "create", sa)
    dev.cli("policies", "create", name, "--rule", f"{pattern}:{perms}")
    dev.cli("policies", "bind", name, "--identity-id", sa)
    return dev.cli("tokens", "create", "--identity", sa, "--scope", scopes, "--ttl", "1h").strip()
