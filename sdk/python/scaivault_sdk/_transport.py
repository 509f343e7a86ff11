"""Running a `Call`: blocking (`SyncTransport`) or awaited (`AsyncTransport`), with one retry
policy and one deadline.

* A call gets `timeout` seconds in all: every attempt, every wait between attempts, a token
  fetch and reading the answer come out of it, so `timeout=1` against a server that never
  answers (or trickles its answer) fails after ~1 s. (The blocking client reads the status
  line and headers with per-read timeouts: a server that trickles its *headers* can hold it
  longer; the awaited client is bounded throughout.)
* A call is sent again only when that cannot apply it twice or make a done change look
  failed: after a 429 (the server did nothing), a connection that never opened, or for a call
  safe to repeat (reads; writes carry an `Idempotency-Key` the server answers repeats of
  with the first result).
* `Retry-After` is honoured; a wait that would pass the deadline is not started, and the
  429 is the answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any, AsyncIterator, Iterator, TypeVar

import httpx

from . import _calls
from ._cache import SecretCache
from ._calls import Call, Pages
from ._config import Settings
from .errors import ScaiVaultError, TransportError, from_response, retry_after_seconds
from .models import Secret

__version__ = "0.2.0"
USER_AGENT = f"scaivault-python/{__version__}"
_REFRESH_MARGIN = 60.0

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741


class Tokens:
    """The bearer token, and for client-credential clients its renewal. Shared by the two
    halves of a `ScaiVaultClient`."""

    def __init__(self, settings: Settings) -> None:
        self.token = settings.token
        self.expires: float | None = None
        self.client_id = settings.client_id
        self.client_secret = settings.client_secret
        self.lock = threading.Lock()

    def needs_fetch(self) -> bool:
        if self.client_id is None:
            return False
        return self.token is None or (self.expires is not None and self.expires - time.time() < _REFRESH_MARGIN)

    def renewable(self, err: ScaiVaultError) -> bool:
        return self.client_id is not None and err.status_code == 401

    def fetch_call(self) -> Call[dict[str, Any]]:
        assert self.client_id is not None and self.client_secret is not None
        return _calls.client_credentials(self.client_id, self.client_secret)

    def set(self, body: dict[str, Any]) -> None:
        self.token = body["access_token"]
        self.expires = time.time() + float(body.get("expires_in", 3600))

    def headers(self, call: Call[Any]) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT}
        if call.auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if call.idempotency_key:
            h["Idempotency-Key"] = call.idempotency_key
        return h


class _Attempts:
    """One call's retry budget and deadline."""

    def __init__(self, settings: Settings, call: Call[Any]) -> None:
        self.settings = settings
        self.call = call
        self.allowed = settings.timeout + call.wait
        self.deadline = time.monotonic() + self.allowed
        self.attempt = 0

    def remaining(self) -> float | None:
        left = self.deadline - time.monotonic()
        return left if left > 0 else None

    def timed_out(self, sent: bool) -> TransportError:
        return TransportError(
            "timeout",
            f"no answer from the vault within {self.allowed:g} s",
            maybe_applied=sent and self.call.method != "GET",
        )

    def _wait(self, retry_after: float | None) -> float | None:
        if self.attempt >= self.settings.retries:
            return None
        delay = retry_after if retry_after is not None else self.settings.backoff * (2**self.attempt) * (0.5 + random.random())
        if time.monotonic() + delay >= self.deadline:
            return None
        self.attempt += 1
        return delay

    def after_failure(self, e: Exception) -> float:
        """The wait before sending again, or raises: only a connection that never opened, or a
        call safe to repeat, is sent again."""
        never_sent = isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))
        delay = self._wait(None) if (never_sent or self.call.safe_to_retry) else None
        if delay is None:
            raise _unreachable(e, maybe_applied=not never_sent and self.call.method != "GET") from None
        return delay

    def after_answer(self, status: int, headers: httpx.Headers) -> float | None:
        """The wait before sending again, or `None` to take this answer."""
        if status == 429 or (status == 503 and self.call.safe_to_retry):
            return self._wait(retry_after_seconds(headers))
        return None


def _unreachable(e: Exception, maybe_applied: bool) -> TransportError:
    if isinstance(e, (httpx.TimeoutException, asyncio.TimeoutError)):
        return TransportError("timeout", f"no answer from the vault in time ({type(e).__name__})", maybe_applied=maybe_applied)
    if "CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate verify failed" in str(e):
        # Said as such: a certificate problem is not an outage (the CLI says the same).
        return TransportError(
            "connection_error",
            "the vault's TLS certificate is not trusted: give ca_cert= (or SCAIVAULT_CACERT) for a private CA",
        )
    return TransportError("connection_error", f"cannot reach the vault ({type(e).__name__})", maybe_applied=maybe_applied)


def _decode(status: int, headers: httpx.Headers, content: bytes, call: Call[T]) -> T:
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if status >= 400:
        raise from_response(status, body, headers)
    return call.parse(body)


def _limits(settings: Settings) -> httpx.Limits:
    return httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)


class SyncTransport:
    def __init__(self, settings: Settings, tokens: Tokens, cache: SecretCache | None) -> None:
        self.settings = settings
        self.tokens = tokens
        self.cache = cache
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    base_url=self.settings.base_url, verify=self.settings.verify, limits=_limits(self.settings)
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def _send(self, call: Call[T], attempts: _Attempts) -> T:
        http = self.http()
        last: tuple[int, httpx.Headers, bytes] | None = None
        while True:
            left = attempts.remaining()
            if left is None:
                if last is not None:  # the deadline came while waiting out a 429: that is the answer
                    return _decode(*last, call)
                raise attempts.timed_out(sent=False)
            try:
                with http.stream(
                    call.method, call.path, params=call.params, json=call.json,
                    headers=self.tokens.headers(call), timeout=httpx.Timeout(left),
                ) as resp:
                    chunks = []
                    for chunk in resp.iter_bytes():
                        chunks.append(chunk)
                        if attempts.remaining() is None:  # an answer trickled past the deadline
                            raise attempts.timed_out(sent=True)
                    answer = (resp.status_code, resp.headers, b"".join(chunks))
            except httpx.TransportError as e:
                time.sleep(attempts.after_failure(e))
                continue
            delay = attempts.after_answer(answer[0], answer[1])
            if delay is None:
                return _decode(*answer, call)
            last = answer
            time.sleep(delay)

    def _authorised(self, call: Call[T], attempts: _Attempts) -> T:
        if call.auth and self.tokens.needs_fetch():
            with self.tokens.lock:
                if self.tokens.needs_fetch():
                    self.tokens.set(self._send(self.tokens.fetch_call(), attempts))
        try:
            return self._send(call, attempts)
        except ScaiVaultError as e:
            if not (call.auth and self.tokens.renewable(e)):
                raise
            self.tokens.token = None
            self.tokens.set(self._send(self.tokens.fetch_call(), attempts))
            return self._send(call, attempts)

    def run(self, call: Call[T]) -> T:
        cache = self.cache
        if cache is not None and call.reads is not None:
            cached, refresh = cache.lookup(call.reads)
            if cached is not None:
                if refresh:
                    threading.Thread(target=self._refresh, args=(call,), daemon=True).start()
                return cached  # type: ignore[return-value]  # `reads` is only set on Call[Secret]
            generation = cache.generation(call.reads)
            result = self._authorised(call, _Attempts(self.settings, call))
            if isinstance(result, Secret):
                cache.store(call.reads, result, generation)
            return result
        try:
            return self._authorised(call, _Attempts(self.settings, call))
        finally:
            # Whatever the answer (a lost one may hide a change that happened).
            if cache is not None and call.changes is not None:
                cache.invalidate(call.changes)

    def _refresh(self, call: Call[Any]) -> None:
        assert self.cache is not None and call.reads is not None
        generation = self.cache.generation(call.reads)
        try:
            fresh = self._authorised(call, _Attempts(self.settings, call))
        except ScaiVaultError:
            self.cache.refresh_failed(call.reads)  # served until its ttl; the next read retries
            return
        self.cache.store(call.reads, fresh, generation)

    def pages(self, pages: Pages[I]) -> Iterator[I]:
        cursor: str | None = None
        while True:
            page = self.run(pages.make(cursor))
            yield from page.items
            cursor = page.cursor
            if not page.has_more or not cursor:
                return

    def collect(self, pages: Pages[I]) -> list[I]:
        return list(self.pages(pages))


class AsyncTransport:
    """Awaited calls. Its connection pool belongs to one event loop: called from another
    (a second `asyncio.run()`), it opens a new pool instead of failing with "Event loop is
    closed"."""

    def __init__(self, settings: Settings, tokens: Tokens, cache: SecretCache | None) -> None:
        self.settings = settings
        self.tokens = tokens
        self.cache = cache
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            # The old pool's loop is gone (or was another): its sockets die with it.
            self._http = httpx.AsyncClient(
                base_url=self.settings.base_url, verify=self.settings.verify, limits=_limits(self.settings)
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None
        self._loop = None

    async def _send(self, call: Call[T], attempts: _Attempts) -> T:
        http = self.http()
        last: tuple[int, httpx.Headers, bytes] | None = None
        while True:
            left = attempts.remaining()
            if left is None:
                if last is not None:
                    return _decode(*last, call)
                raise attempts.timed_out(sent=False)

            async def attempt() -> tuple[int, httpx.Headers, bytes]:
                resp = await http.request(
                    call.method, call.path, params=call.params, json=call.json,
                    headers=self.tokens.headers(call), timeout=httpx.Timeout(left),
                )
                return resp.status_code, resp.headers, resp.content

            try:
                # The whole attempt, headers and body, within what is left.
                answer = await asyncio.wait_for(attempt(), timeout=left)
            except (httpx.TransportError, asyncio.TimeoutError) as e:
                await asyncio.sleep(attempts.after_failure(e))
                continue
            delay = attempts.after_answer(answer[0], answer[1])
            if delay is None:
                return _decode(*answer, call)
            last = answer
            await asyncio.sleep(delay)

    async def _authorised(self, call: Call[T], attempts: _Attempts) -> T:
        if call.auth and self.tokens.needs_fetch():
            self.tokens.set(await self._send(self.tokens.fetch_call(), attempts))
        try:
            return await self._send(call, attempts)
        except ScaiVaultError as e:
            if not (call.auth and self.tokens.renewable(e)):
                raise
            self.tokens.token = None
            self.tokens.set(await self._send(self.tokens.fetch_call(), attempts))
            return await self._send(call, attempts)

    async def run(self, call: Call[T]) -> T:
        cache = self.cache
        if cache is not None and call.reads is not None:
            cached, refresh = cache.lookup(call.reads)
            if cached is not None:
                if refresh:
                    task = asyncio.get_running_loop().create_task(self._refresh(call))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                return cached  # type: ignore[return-value]  # `reads` is only set on Call[Secret]
            generation = cache.generation(call.reads)
            result = await self._authorised(call, _Attempts(self.settings, call))
            if isinstance(result, Secret):
                cache.store(call.reads, result, generation)
            return result
        try:
            return await self._authorised(call, _Attempts(self.settings, call))
        finally:
            if cache is not None and call.changes is not None:
                cache.invalidate(call.changes)

    async def _refresh(self, call: Call[Any]) -> None:
        assert self.cache is not None and call.reads is not None
        generation = self.cache.generation(call.reads)
        try:
            fresh = await self._authorised(call, _Attempts(self.settings, call))
        except ScaiVaultError:
            self.cache.refresh_failed(call.reads)
            return
        self.cache.store(call.reads, fresh, generation)

    async def pages(self, pages: Pages[I]) -> AsyncIterator[I]:
        cursor: str | None = None
        while True:
            page = await self.run(pages.make(cursor))
            for item in page.items:
                yield item
            cursor = page.cursor
            if not page.has_more or not cursor:
                return

    async def collect(self, pages: Pages[I]) -> list[I]:
        return [x async for x in self.pages(pages)]
