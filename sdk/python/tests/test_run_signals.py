"""`scaivault run` and signals, with bash as the child: a signal sent to the runner reaches the
child (SIGUSR1 used to kill the runner and orphan the child), and Ctrl-C on a terminal reaches
the child once, not twice (the terminal already delivers it to the whole foreground group)."""

from __future__ import annotations

import pathlib

import os
import pty
import select
import signal
import subprocess

from conftest import Dev, binary


def run_args(script: str) -> list[str]:
    return [binary(), "run", "--prefix", "sig/", "--", "bash", "-c", script]


def env_for(dev: Dev, tmp_path: pathlib.Path) -> dict[str, str]:
    return dict(os.environ, SCAIVAULT_URL=dev.url, SCAIVAULT_TOKEN=dev.token, HOME=str(tmp_path))


def test_a_signal_sent_to_the_runner_reaches_the_child(dev: Dev, tmp_path: pathlib.Path) -> None:
    dev.cli("secrets", "write", "sig/api_key", "value=k")
    script = 'trap "echo got-usr1; exit 7" USR1; trap "echo got-usr2; exit 9" USR2; echo ready; while :; do sleep 0.05; done'
    for sig, said, code in [(signal.SIGUSR1, "got-usr1", 7), (signal.SIGUSR2, "got-usr2", 9)]:
        p = subprocess.Popen(run_args(script), env=env_for(dev, tmp_path), stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.send_signal(sig)
        out, _ = p.communicate(timeout=30)
        assert said in out, out
        assert p.returncode == code, (sig, p.returncode, out)


def read_until(fd: int, marker: bytes | None, seen: bytearray) -> None:
    """Reads the terminal until `marker` shows, or (None) until the other side closes it."""
    while marker is None or marker not in seen:
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, f"no {marker!r} in {bytes(seen)!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen.extend(chunk)


def test_ctrl_c_on_a_terminal_reaches_the_child_once(dev: Dev, tmp_path: pathlib.Path) -> None:
    dev.cli("secrets", "write", "sig/api_key", "value=k")
    # The child counts its SIGINTs; after the first it waits a moment for a duplicate.
    script = 'n=0; trap "n=\\$((n+1))" INT; echo ready; while [ $n -eq 0 ]; do sleep 0.05; done; sleep 0.5; echo "ints=$n"'
    env = env_for(dev, tmp_path)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(binary(), run_args(script), env)
    seen = bytearray()
    read_until(fd, b"ready", seen)
    os.write(fd, b"\x03")
    read_until(fd, None, seen)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = bytes(seen).decode(errors="replace")
    assert "ints=1" in text, text
    assert os.waitstatus_to_exitcode(status) == 0, text
