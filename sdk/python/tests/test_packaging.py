"""`pip install ./sdk/python` from a checkout nobody may write to: the build writes nothing
into the source tree (checked on a copy, since the tests may run as root, whom permissions do
not stop), and the installed package imports with its type marker."""

from __future__ import annotations

import pathlib

import shutil
import subprocess
import sys

from conftest import ROOT


def listing(tree: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))


def test_the_sdk_installs_without_writing_into_its_checkout(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "sdk"
    shutil.copytree(ROOT / "sdk" / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    before = listing(src)
    for p in src.rglob("*"):
        p.chmod(0o555 if p.is_dir() else 0o444)
    src.chmod(0o555)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert listing(src) == before, "the build wrote into the source tree"
    assert (target / "scaivault_sdk" / "py.typed").exists()
    r = subprocess.run([sys.executable, "-c", "import scaivault_sdk; print(scaivault_sdk.ScaiVaultClient.__name__)"],
                       env={"PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert r.stdout.strip() == "ScaiVaultClient", r.stderr


def test_the_async_api_is_made_from_the_blocking_one() -> None:
    """`_async_api.py` is generated from `_api.py`; a change to one alone fails here."""
    r = subprocess.run([sys.executable, str(ROOT / "sdk" / "python" / "tools" / "unasync.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
