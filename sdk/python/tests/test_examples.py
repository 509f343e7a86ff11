"""The runnable walk-through in examples/dotenv-migration, end to end on a fresh vault."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, binary


def test_dotenv_migration_example_runs_end_to_end() -> None:
    env = dict(os.environ, SCAIVAULT_BIN=binary(), PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    env.pop("SCAIVAULT_URL", None)
    env.pop("SCAIVAULT_TOKEN", None)
    r = subprocess.run(["bash", str(ROOT / "examples" / "dotenv-migration" / "run.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "2 secrets from vault" in out
    assert "WAREHOUSE_PASSWORD=******" in out
    assert "from env-fallback" in out
    assert out.rstrip().endswith("== migration complete")
    for value in ("sk_live_51HbillingDEMO", "w@rehouse pass", "sf-secret-demo"):
        assert value not in out, f"a secret value was printed: {value}"
