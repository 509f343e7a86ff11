"""Every shell command of the README's walk-through, run in order against a fresh dev vault.

The harness provides what a reader would have: a running `scaivault dev` (its two `export`
lines are set from it), a `services/billing/.env.production`, a `mapping.json`, the
`$STRIPE_SECRET_KEY` the reader's shell has, and a `./billing-service` to start."""

from __future__ import annotations

import pathlib

import os
import re
import shutil
import subprocess

from conftest import Dev, ROOT, binary


def walkthrough_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Walk-through") : text.index("## Not yet")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_every_walkthrough_command_runs(dev: Dev, tmp_path: pathlib.Path) -> None:
    assert shutil.which("jq"), "the walk-through pipes into jq"
    blocks = walkthrough_blocks()
    assert len(blocks) >= 6
    (tmp_path / "services" / "billing").mkdir(parents=True)
    (tmp_path / "services" / "billing" / ".env.production").write_text(
        "# billing\nexport STRIPE_SECRET_KEY=sk_live_readme\nSALESFORCE_CLIENT_ID=cid\n"
        "SALESFORCE_CLIENT_SECRET=csecret\nLOG_LEVEL=info\nDATABASE_URL='postgres://b:p@db/b'\n"
    )
    (tmp_path / "mapping.json").write_text(
        '{"secrets": {"stripe": {"STRIPE_SECRET_KEY": "secret_key"},'
        ' "salesforce": {"SALESFORCE_CLIENT_ID": "client_id", "SALESFORCE_CLIENT_SECRET": "client_secret"}},'
        ' "skip": ["LOG_LEVEL"]}'
    )
    service = tmp_path / "billing-service"
    service.write_text('#!/bin/sh\necho "billing-service started with ${STRIPE_SECRET_KEY:+a stripe key}"\n')
    service.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scaivault").symlink_to(binary())
    env = dict(
        os.environ,
        PATH=f"{bindir}:{os.environ['PATH']}",
        HOME=str(tmp_path),
        SCAIVAULT_URL=dev.url,
        SCAIVAULT_TOKEN=dev.token,
        STRIPE_SECRET_KEY="sk_live_from_the_shell",
    )
    ran = 0
    for block in blocks:
        lines = [l for l in block.splitlines() if not l.startswith(("scaivault dev", "export SCAIVAULT_"))]
        script = "\n".join(lines).strip()
        if not script:
            continue
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"README block failed:\n{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        ran += script.count("scaivault ")
    assert ran >= 15, f"only {ran} commands ran: did the walk-through lose its blocks?"
    # What the walk-through promised happened.
    who = subprocess.run(["scaivault", "policies", "test", "environments/production/billing/stripe", "read", "--identity", "sa:billing-prod"],
                         env=env, capture_output=True, text=True)
    assert who.stdout.startswith("allowed")
    assert (tmp_path / "audit.csv").read_text().startswith("id,timestamp,action")
