"""`scaivault export dotenv` read back by the loaders people use, with hostile values: every
value comes back exactly in python-dotenv (interpolation on, as applications load it), in
bash (`set -a; . file`) and in docker compose's `env_file` reader (compose-go's dotenv package,
built from tests/readers/compose-dotenv with Go), except those the export warns no quoting can
carry to a reader, and then only in the readers it names."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import urllib.request

from dotenv import dotenv_values

from conftest import Dev, ROOT, binary

# Each value is stored as its own secret and exported under its own variable.
CORPUS = [
    "plain-value_1",
    "",
    "two words  # not a comment",
    "$HOME/x",
    "${HOME} and $(whoami) and `id`",
    "it's",
    'say "hi"',
    "C:\\path\\new",
    "ends with a backslash\\",
    "\\\\double",
    "line1\nline2\n",
    "tab\there",
    "  padded  ",
    "héllo ✓ 🗝",
    "a=b=c",
    "!bang *glob? ~tilde ;rm -rf / &",
    "-----BEGIN KEY-----\nMIIB\\n+/=\n-----END KEY-----",
    "it's 100$ / $.",
    # No quoting carries these to every reader: the export says which differ.
    "it's $5",
    "it's `id`",
    "back\\slash ${HOME}",
    "crlf\r\nline",
    "it's $HOME",
]


def put(dev: Dev, path: str, data: dict[str, str]) -> None:
    req = urllib.request.Request(
        f"{dev.url}/v1/secrets/{path}", method="PUT", data=json.dumps({"data": data}).encode(),
        headers={"Authorization": f"Bearer {dev.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status in (200, 201)


def test_exported_values_read_back_exactly_in_python_dotenv_and_bash(dev: Dev, tmp_path: pathlib.Path) -> None:
    want = {}
    for i, value in enumerate(CORPUS):
        put(dev, f"hostile/v{i:02}", {"value": value})
        want[f"V{i:02}"] = value
    out = tmp_path / "exported.env"
    env = dict(os.environ, SCAIVAULT_URL=dev.url, SCAIVAULT_TOKEN=dev.token, HOME=str(tmp_path))
    r = subprocess.run([binary(), "export", "dotenv", "--prefix", "hostile/", "--out", str(out)],
                       env=env, capture_output=True, text=True, check=True)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    warned = r.stderr

    # What the export says cannot reach a reader exactly: "V20 (differs in bash, python-dotenv
    # and docker compose)".
    differs: dict[str, set[str]] = {k: set() for k in want}
    for k, readers in re.findall(r"(V\d\d) \(differs in ([^)]*)\)", warned):
        differs[k] = set(re.split(r", | and ", readers))
    flagged = {k: d for k, d in differs.items() if d}
    assert flagged == {"V04": {"python-dotenv"}, "V18": {"bash"}, "V19": {"bash"},
                       "V20": {"bash", "python-dotenv", "docker compose"}, "V21": {"bash"},
                       "V22": {"bash", "docker compose"}}, warned

    # python-dotenv, as applications load it (interpolation on).
    got = dotenv_values(out)
    for k, v in want.items():
        if "python-dotenv" not in differs[k]:
            assert got[k] == v, (k, v, got[k], out.read_text())

    # bash: source it with every variable exported, then print each NUL-terminated.
    keys = " ".join(want)
    script = f'set -a; . "{out}"; for k in {keys}; do printf "%s\\0" "${{!k}}"; done'
    dumped = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
                            capture_output=True, check=True).stdout.decode()
    values = dumped.split("\0")[:-1]
    assert len(values) == len(want)
    for (k, v), seen in zip(want.items(), values):
        if "bash" not in differs[k]:
            assert seen == v, (k, v, seen)
    # The flagged ones really do differ: the warning is not a blanket excuse.
    assert all(seen != want[k] for k, seen in zip(want, values) if "bash" in differs[k])
    assert all(got[k] != want[k] for k in want if "python-dotenv" in differs[k])

    # docker compose's env_file reader, interpolating from the environment as compose does.
    composed = json.loads(subprocess.run([compose_reader(tmp_path), str(out)], env=env,
                                         capture_output=True, text=True, check=True).stdout)
    assert set(composed) == set(want)
    for k, v in want.items():
        if "docker compose" not in differs[k]:
            assert composed[k] == v, (k, v, composed[k])
    assert all(composed[k] != want[k] for k in want if "docker compose" in differs[k])


def compose_reader(tmp_path: pathlib.Path) -> str:
    """Builds docker compose's env_file reader (vendored compose-go, offline) with Go."""
    go = shutil.which("go")
    assert go, "Go is needed to build docker compose's .env reader: apt-get install golang-go"
    exe = tmp_path / "compose-dotenv"
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOCACHE=str(ROOT / "target" / "go-cache"))
    subprocess.run([go, "build", "-o", str(exe), "."], cwd=ROOT / "tests" / "readers" / "compose-dotenv",
                   env=env, check=True)
    return str(exe)


def test_a_file_compose_would_refuse_is_named_and_python_dotenv_reads_unclosed_braces(dev: Dev, tmp_path: pathlib.Path) -> None:
    # `${x` with no `}`: python-dotenv keeps it literal, so no warning for it alone; next to a
    # `'` it must be double-quoted, where compose takes `${` as a variable and refuses the file.
    put(dev, "braces/a", {"value": "${x"})
    put(dev, "braces/b", {"value": "it's ${x"})
    out = tmp_path / "braces.env"
    env = dict(os.environ, SCAIVAULT_URL=dev.url, SCAIVAULT_TOKEN=dev.token, HOME=str(tmp_path))
    r = subprocess.run([binary(), "export", "dotenv", "--prefix", "braces/", "--out", str(out)],
                       env=env, capture_output=True, text=True, check=True)
    assert "A (differs" not in r.stderr and "B (differs in bash and docker compose)" in r.stderr, r.stderr
    assert "docker compose may refuse this whole file because of B:" in r.stderr, r.stderr
    assert dotenv_values(out) == {"A": "${x", "B": "it's ${x"}
    composed = subprocess.run([compose_reader(tmp_path), str(out)], env=env, capture_output=True, text=True)
    assert composed.returncode != 0 and "Invalid template" in composed.stderr, composed
