"""The SDK used as services use it, against the real binary: retries that never write twice,
a deadline that holds, blocking and awaited clients, settings from the environment and the
CLI, a private CA, the read cache, and the error hierarchy."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Iterator

import pytest

from conftest import Dev, binary
from scaivault_sdk import (
    AsyncClient,
    CacheConfig,
    Client,
    NotFoundError,
    RateLimitError,
    ScaiVaultClient,
    ScaiVaultError,
    Secret,
    TransportError,
)
from scaivault_sdk._cache import SecretCache


class Listener:
    """A loopback TCP server that serves each connection on its own thread."""

    def __init__(self) -> None:
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class Proxy(Listener):
    """A TCP proxy in front of the dev server that misbehaves on purpose: `hold` delays every
    answer by `delay` seconds; `drop_first` passes the first request on and then closes the
    client's connection without its answer (a lost answer to a write that happened);
    `drop_deletes` does that to every DELETE."""

    def __init__(self, upstream: str, mode: str, delay: float = 1.5) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.mode = mode
        self.delay = delay
        super().__init__()

    def _serve(self, client: socket.socket, n: int) -> None:
        up = socket.create_connection(self.upstream)

        deleting = threading.Event()

        def forward() -> None:
            try:
                while data := client.recv(65536):
                    if data.startswith(b"DELETE "):
                        deleting.set()
                    up.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward, daemon=True).start()
        try:
            while data := up.recv(65536):
                if (self.mode == "drop_first" and n == 0) or (self.mode == "drop_deletes" and deleting.is_set()):
                    client.shutdown(socket.SHUT_RDWR)
                    return
                if self.mode == "hold":
                    time.sleep(self.delay)  # the misbehaviour under test, not a wait in the test
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            up.close()


@pytest.fixture
def admin(dev: Dev) -> Iterator[Client]:
    with Client(dev.url, dev.token) as c:
        yield c


def test_a_write_whose_answer_is_lost_is_retried_once_and_writes_one_version(dev: Dev, admin: Client) -> None:
    proxy = Proxy(dev.url, "drop_first")
    try:
        c = Client(proxy.url, dev.token, retries=2, backoff=0.01)
        out = c.secrets.write("svc/db", {"password": "pw-1"})
        assert (out.version, out.created) == (1, True)
        assert proxy.connections >= 2, "the first answer was not lost: nothing was retried"
    finally:
        proxy.close()
    assert [v["version"] for v in admin.secrets.versions("svc/db")] == [1]
    replays = [e for e in admin.audit.query(action="write") if e["extra_data"].get("replayed")]
    assert len(replays) == 1, "the retry reached the server and was answered from the first write"


def test_a_slow_answer_ends_at_the_timeout_and_writes_one_version(dev: Dev, admin: Client) -> None:
    proxy = Proxy(dev.url, "hold", delay=1.5)
    try:
        c = Client(proxy.url, dev.token, timeout=1.0, retries=3, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(TransportError) as e:
            c.secrets.write("svc/slow", {"password": "pw-1"})
        assert e.value.code == "timeout" and e.value.status is None
        assert time.monotonic() - started < 1.4, "retries ran past the deadline"
    finally:
        proxy.close()
    deadline = time.monotonic() + 10
    while not list(admin.secrets.list("svc/")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the held write lands on the server after the client gave up
    assert [v["version"] for v in admin.secrets.versions("svc/slow")] == [1]


def test_a_server_that_never_answers_costs_only_the_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        c = Client(f"http://127.0.0.1:{silent.getsockname()[1]}", "skt_x", timeout=1.0, retries=3)
        started = time.monotonic()
        with pytest.raises(TransportError) as e:
            c.secrets.read("app/x")
        assert e.value.code == "timeout"
        assert time.monotonic() - started < 1.5
    finally:
        silent.close()


def test_async_client_serves_several_event_loops_and_the_dual_client_refuses_a_missed_await(dev: Dev, admin: Client) -> None:
    admin.secrets.write("svc/k", {"k": "v"})
    ac = AsyncClient(dev.url, dev.token)
    for _ in range(2):  # a second asyncio.run() used to fail with "Event loop is closed"
        secret = asyncio.run(ac.secrets.read("svc/k"))
        assert secret.data["k"] == "v"

    async def listed() -> list[str]:
        async with AsyncClient(dev.url, dev.token) as c:
            return [s.path async for s in c.secrets.list("svc/")]

    assert asyncio.run(listed()) == ["svc/k"]

    dual = ScaiVaultClient(base_url=dev.url, token=dev.token)
    assert dual.secrets.read("svc/k").data["k"] == "v"  # plain code: a value, as the tutorial uses it

    def sync_helper() -> Any:
        return dual.secrets.read("svc/k").data["k"]

    async def handler() -> None:
        with pytest.raises(TypeError, match="await it, or use scaivault_sdk.Client"):
            sync_helper()
        assert (await dual.secrets.read("svc/k")).data["k"] == "v"

    with pytest.warns(RuntimeWarning, match="never awaited"):
        asyncio.run(handler())  # twice: the dual client's awaited half serves a new loop too
        asyncio.run(handler())
        gc.collect()


def test_settings_come_from_the_environment_and_the_cli_login(dev: Dev, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Client(dev.url, dev.token).secrets.write("svc/k", {"k": "v"})
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCAIVAULT_URL", dev.url)
    monkeypatch.setenv("SCAIVAULT_TOKEN", dev.token)
    assert Client().secrets.read("svc/k").data["k"] == "v"
    # As hvac does without VAULT_TOKEN: no token anywhere is a clear error.
    monkeypatch.delenv("SCAIVAULT_TOKEN")
    with pytest.raises(ValueError, match="no token"):
        Client()
    # The CLI's saved login and address, as `scaivault auth login` leaves them.
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run([binary(), "config", "set", "url", dev.url], env=env, check=True, capture_output=True)
    subprocess.run([binary(), "auth", "login", "--token", "-"], input=dev.token, text=True, env=env, check=True,
                   capture_output=True)
    monkeypatch.delenv("SCAIVAULT_URL")
    assert Client().auth.whoami()["identity_id"] == "user:root"
    assert dev.token not in repr(Client()) and dev.token not in repr(Client()._transport.settings)


def test_a_private_ca_is_trusted_only_when_given(tmp_path: pathlib.Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    vault = tmp_path / "vault.db"
    env = {**os.environ, "HOME": str(tmp_path), "SCAIVAULT_PASSPHRASE": "correct horse battery staple"}
    init = subprocess.run([binary(), "init", "--vault", str(vault), "--json", "--kdf-memory-mib", "19", "--kdf-passes", "2"],
                          env=env, check=True, capture_output=True, text=True)
    root = json.loads(init.stdout)["root_token"]
    kf = tmp_path / "vault.key"
    subprocess.run([binary(), "operator", "key-file", str(kf), "--vault", str(vault)], env=env, check=True, capture_output=True)
    env.pop("SCAIVAULT_PASSPHRASE")
    server = subprocess.Popen([binary(), "server", "--vault", str(vault), "--listen", "127.0.0.1:0", "--key-file", str(kf),
                               "--tls-cert", str(cert), "--tls-key", str(key)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        url = ""
        for line in server.stderr:
            if "listening on " in line:
                url = line.split("listening on ")[1].split()[0]
                break
        assert url.startswith("https://"), url
        with pytest.raises(TransportError) as e:
            Client(url, root, retries=0).auth.whoami()
        assert e.value.code == "connection_error" and "certificate" in e.value.message
        assert Client(url, root, ca_cert=str(cert)).auth.whoami()["identity_id"] == "user:root"
    finally:
        server.kill()
        server.wait()


def test_the_cache_serves_refreshes_ahead_and_forgets_what_the_client_changes(dev: Dev, admin: Client) -> None:
    admin.secrets.write("svc/k", {"k": "v1"})
    now = [0.0]
    c = Client(dev.url, dev.token, cache=CacheConfig(ttl=10, refresh_ahead=0.5))
    cache = c._transport.cache
    assert isinstance(cache, SecretCache)
    cache._clock = lambda: now[0]
    assert c.secrets.read("svc/k").data["k"] == "v1"
    admin.secrets.write("svc/k", {"k": "v2"})  # through another client: this one cannot know
    now[0] = 2
    assert c.secrets.read("svc/k").data["k"] == "v1", "a fresh copy is served from the cache"
    now[0] = 6  # past refresh_ahead: served, and refreshed in the background
    assert c.secrets.read("svc/k").data["k"] == "v1"
    deadline = time.monotonic() + 10
    while cache.lookup("svc/k")[0] is not None and cache.lookup("svc/k")[0].data["k"] != "v2":  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.01)
    assert c.secrets.read("svc/k").data["k"] == "v2"
    # A write through this client drops its copy; so does the ttl.
    c.secrets.write("svc/k", {"k": "v3"})
    assert c.secrets.read("svc/k").data["k"] == "v3"
    admin.secrets.write("svc/k", {"k": "v4"})
    now[0] = 100
    assert c.secrets.read("svc/k").data["k"] == "v4"
    # A pinned version never comes from the cache.
    assert c.secrets.read("svc/k", version=1).data["k"] == "v1"

    # Threads share it safely.
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                assert c.secrets.read("svc/k").data["k"] == "v4"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert "v4" not in repr(c.secrets.read("svc/k"))


def test_every_error_carries_code_status_request_id_and_retry_after(limited_dev: Dev) -> None:
    c = Client(limited_dev.url, limited_dev.token, retries=0)
    with pytest.raises(ScaiVaultError) as e:
        c.secrets.read("app/missing")
    assert (e.value.code, e.value.status, e.value.retry_after) == ("secret_not_found", 404, None)
    assert e.value.request_id and e.value.request_id.startswith("req_")
    limited: RateLimitError | None = None
    for _ in range(500):
        try:
            c.secrets.read("app/missing")
        except RateLimitError as r:
            limited = r
            break
        except ScaiVaultError:
            continue
    assert limited is not None and limited.status == 429 and limited.retry_after and limited.retry_after >= 1


def test_plugin_types_are_strings() -> None:
    s = Secret.from_json({"path": "a/b", "version": 1, "secret_type": "acme_token", "data": {"t": "x"}})
    assert s.secret_type == "acme_token"


def test_mypy_strict_catches_a_misspelt_field(tmp_path: pathlib.Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from scaivault_sdk import Client\n"
        "s = Client('http://127.0.0.1:1', 'skt_x').secrets.read('a/b')\n"
        "print(s.dataa['x'])\n"
        "n: str = Client('http://127.0.0.1:1', 'skt_x').policies.test('sa:a', 'a/b', 'read')['allowed']\n"
    )
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(wrong)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout
    assert '"Secret" has no attribute "dataa"' in r.stdout, r.stdout
    assert "Incompatible types in assignment" in r.stdout, r.stdout


class Scripted(Listener):
    """A raw HTTP server that answers every request with `answer(conn)`: what a broken or
    hostile network path does, which no real vault would."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests = 0
        super().__init__()

    def _serve(self, conn: socket.socket, n: int) -> None:
        try:
            while conn.recv(65536):
                self.requests += 1
                self.answer(conn)
        except OSError:
            pass
        finally:
            conn.close()


def trickle(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(100):
        conn.sendall(b" ")
        time.sleep(0.3)  # the hostile server's pace, not a wait in the test


def trickle_headers(conn: socket.socket) -> None:
    for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100:
        conn.sendall(bytes([b]))
        time.sleep(0.3)


def test_a_trickled_answer_ends_at_the_timeout() -> None:
    body = Scripted(trickle)
    headers = Scripted(trickle_headers)
    try:
        makers: list[Callable[[], object]] = [
            lambda: Client(body.url, "skt_x", timeout=1.0).secrets.read("a/b"),
            lambda: asyncio.run(AsyncClient(body.url, "skt_x", timeout=1.0).secrets.read("a/b")),
            lambda: asyncio.run(AsyncClient(headers.url, "skt_x", timeout=1.0).secrets.read("a/b")),
        ]
        for make in makers:
            started = time.monotonic()
            with pytest.raises(TransportError) as e:
                make()
            assert e.value.code == "timeout"
            assert time.monotonic() - started < 1.8
    finally:
        body.close()
        headers.close()


def test_rate_limits_end_as_rate_limited_and_bad_retry_after_is_ignored() -> None:
    def limited(value: str) -> Any:
        def answer(conn: socket.socket) -> None:
            body = b'{"error":{"code":"rate_limited","message":"slow down","details":{},"request_id":"req_1"}}'
            conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: "
                         + value.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        return answer

    for value in ("0", "-1", "nan", "inf"):
        server = Scripted(limited(value))
        try:
            with pytest.raises(RateLimitError) as e:
                Client(server.url, "skt_x", timeout=1.0, retries=1000, backoff=0.01).secrets.read("a/b")
            assert e.value.code == "rate_limited" and e.value.status == 429
            assert server.requests >= 2, "a 429 is retried"
        finally:
            server.close()


def test_a_change_whose_answer_is_lost_is_not_resent_and_says_it_may_have_happened(dev: Dev, admin: Client) -> None:
    proxy = Proxy(dev.url, "drop_first")
    try:
        c = Client(proxy.url, dev.token, retries=3, backoff=0.01)
        with pytest.raises(TransportError) as e:
            c.policies.create("lost", [{"path_pattern": "lost/**", "permissions": ["read"]}])
        assert e.value.maybe_applied is True
        assert proxy.connections == 1, "a create is sent once"
    finally:
        proxy.close()
    assert admin.policies.get("lost")["name"] == "lost", "it happened, as maybe_applied said"
    # A read that never connected says it was not applied.
    silent = Client("http://127.0.0.1:9", dev.token, retries=0)
    with pytest.raises(TransportError) as e:
        silent.secrets.read("a/b")
    assert e.value.maybe_applied is False


def test_the_cache_forgets_what_a_lost_answer_may_have_changed(dev: Dev, admin: Client) -> None:
    admin.secrets.write("svc/gone", {"pw": "OLD"})
    proxy = Proxy(dev.url, "drop_deletes")
    try:
        c = Client(proxy.url, dev.token, retries=3, backoff=0.01, cache=CacheConfig(ttl=3600))
        assert c.secrets.read("svc/./gone").data["pw"] == "OLD"
        with pytest.raises(TransportError) as e:
            c.secrets.delete("svc/gone")  # happens; its answer is lost
        assert e.value.maybe_applied is True
        with pytest.raises(NotFoundError):
            c.secrets.read("svc/gone")  # not the cached OLD
        # A rotation by policy (no path) may change any attached secret: the cache empties.
        admin.secrets.write("svc/rot", {"password": "ORIGINAL"})
        admin.rotation.create_policy("r", "30d", auto_generate=True)
        admin.rotation.assign("rot_r", "svc/rot")
        assert c.secrets.read("svc/rot").data["password"] == "ORIGINAL"
        c.rotation.rotate("rot_r")
        assert c.secrets.read("svc/rot").version == 2
    finally:
        proxy.close()


def test_odd_keys_and_a_broken_cli_config_are_named(dev: Dev, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Client(dev.url, dev.token)
    for key in ("café", "two\nlines", "", "x" * 256):
        with pytest.raises(ValueError, match="idempotency_key"):
            c.secrets.write("svc/k", {"k": "v"}, idempotency_key=key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SCAIVAULT_URL", raising=False)
    monkeypatch.delenv("SCAIVAULT_TOKEN", raising=False)
    (tmp_path / ".scaivault").mkdir()
    config = tmp_path / ".scaivault" / "config.json"
    for text in ("not json", "[]", '{"token": {"a": "b"}}'):
        config.write_text(text)
        with pytest.raises(ValueError, match="config.json"):
            Client()
    # With the address and token given, a broken saved file is not in the way.
    assert Client(dev.url, dev.token).auth.whoami()["identity_id"] == "user:root"
    with pytest.raises(ValueError, match="cannot use the CA certificate /nonexistent/ca.pem"):
        Client(dev.url, dev.token, ca_cert="/nonexistent/ca.pem")


def test_every_unawaited_call_is_reported(dev: Dev) -> None:
    from scaivault_sdk import NotAwaitedWarning

    dual = ScaiVaultClient(base_url=dev.url, token=dev.token)

    async def forgetful() -> None:
        for _ in range(2):
            dual.secrets.write("svc/k", {"k": "v"})

    with pytest.warns(NotAwaitedWarning) as seen:
        asyncio.run(forgetful())
        gc.collect()
    assert len([w for w in seen if issubclass(w.category, NotAwaitedWarning)]) == 2


def test_a_long_poll_waits_past_the_client_timeout_and_wakes_on_a_write(dev: Dev) -> None:
    # The client's timeout (1 s) is for the vault's work; a poll's own wait comes on top.
    with Client(base_url=dev.url, token=dev.token, timeout=1) as c:
        feed = c.subscriptions.create("app-feed", ["app/**"], ["secret.created"])
        started = time.monotonic()
        assert c.subscriptions.poll(feed["id"], timeout=2) == {"events": [], "has_more": False}
        assert time.monotonic() - started >= 2
        got: list[Any] = []
        poller = threading.Thread(target=lambda: got.append(c.subscriptions.poll(feed["id"], timeout=60)))
        poller.start()
        # The poll is waiting (the server's gauge says so) before the write it must wake for.
        deadline = time.monotonic() + 10
        while "scaivault_subscription_polls_waiting 1" not in _metrics(dev):
            assert time.monotonic() < deadline, "the poll never started waiting"
            time.sleep(0.02)
        c.secrets.write(path="app/new", data={"k": "v"})
        poller.join(timeout=30)
        assert not poller.is_alive(), "the poll was not woken by the write"
        assert [e["path"] for e in got[0]["events"]] == ["app/new"]


def _metrics(dev: Dev) -> str:
    with urllib.request.urlopen(f"{dev.url}/v1/metrics") as r:
        return str(r.read().decode())
