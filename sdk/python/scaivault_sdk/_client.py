"""The clients.

* `Client` blocks; `AsyncClient` is awaited (as httpx has both). Use these.
* `ScaiVaultClient` is the tutorial's client: a plain call from synchronous code returns the
  result; inside a running event loop it returns something to `await`. Using that result
  without awaiting it (a synchronous helper called from async code) raises a `TypeError` that
  says so, never a silent coroutine; a call whose result is dropped unawaited does nothing,
  and says so in a `NotAwaitedWarning` each time. `SyncScaiVaultClient` is `Client`.

Every client reads its settings as `_config` describes (arguments, `SCAIVAULT_URL` /
`SCAIVAULT_TOKEN` / `SCAIVAULT_CACERT`, the CLI's saved settings), pools its connections, and
takes `cache=CacheConfig(...)` for an in-memory read cache.
"""

from __future__ import annotations

import asyncio
import warnings
from types import TracebackType
from typing import Any, Callable, Generator

from ._api import Audit, Auth, Policies, Rotation, Secrets, Subscriptions
from ._async_api import AsyncAudit, AsyncAuth, AsyncPolicies, AsyncRotation, AsyncSecrets, AsyncSubscriptions
from ._cache import CacheConfig, SecretCache
from ._config import Settings, Verify, resolve
from ._transport import AsyncTransport, SyncTransport, Tokens


class _ClientBase:
    """The settings every client takes (`_config` says where the ones left out come from)."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_connections: int = 20,
        verify: Verify | None = None,
        ca_cert: str | None = None,
        cache: CacheConfig | None = None,
    ) -> None:
        s = resolve(base_url, token, client_id, client_secret, timeout, retries, backoff, max_connections, verify, ca_cert)
        self.base_url = s.base_url
        self._start(s, Tokens(s), SecretCache(cache) if cache else None)

    def _start(self, settings: Settings, tokens: Tokens, cache: SecretCache | None) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class Client(_ClientBase):
    """Blocking client.

    `Client()` with no arguments reads `SCAIVAULT_URL` and `SCAIVAULT_TOKEN` (then the CLI's
    saved settings). `client_id` + `client_secret` log in as a service account and renew the
    token before it expires. `timeout` bounds each call in all, retries included. `verify`
    (bool, CA file or `ssl.SSLContext`) or `ca_cert` (a CA file) for a private CA.
    """

    def _start(self, settings: Settings, tokens: Tokens, cache: SecretCache | None) -> None:
        transport = SyncTransport(settings, tokens, cache)
        self._transport = transport
        self.secrets = Secrets(transport)
        self.policies = Policies(transport)
        self.rotation = Rotation(transport)
        self.audit = Audit(transport)
        self.auth = Auth(transport)
        self.subscriptions = Subscriptions(transport)

    def close(self) -> None:
        """Closes the connection pool (the client opens a new one if used again)."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """Awaited client; the same settings as `Client`. One instance may serve several event
    loops in turn (each `asyncio.run()` gets its own connection pool)."""

    def _start(self, settings: Settings, tokens: Tokens, cache: SecretCache | None) -> None:
        transport = AsyncTransport(settings, tokens, cache)
        self._transport = transport
        self.secrets = AsyncSecrets(transport)
        self.policies = AsyncPolicies(transport)
        self.rotation = AsyncRotation(transport)
        self.audit = AsyncAudit(transport)
        self.auth = AsyncAuth(transport)
        self.subscriptions = AsyncSubscriptions(transport)

    async def aclose(self) -> None:
        """Closes the connection pool of the running event loop."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class SyncScaiVaultClient(Client):
    """`Client` under its first name."""


_NOT_AWAITED = (
    "ScaiVaultClient was called inside a running event loop, so it returned an awaitable "
    "instead of {what}: await it, or use scaivault_sdk.Client for blocking calls "
    "(and scaivault_sdk.AsyncClient in async code)"
)


class NotAwaitedWarning(RuntimeWarning):
    """A `ScaiVaultClient` call made inside an event loop was never awaited: it did nothing."""


# Every such call is reported, not only the first from each line of code.
warnings.simplefilter("always", NotAwaitedWarning)


class Pending:
    """What `ScaiVaultClient` returns inside an event loop: await it (or `async for` a
    listing). Anything else done with it raises a `TypeError` saying so."""

    __slots__ = ("_aw", "_awaited")

    def __init__(self, aw: Any) -> None:
        self._aw = aw
        self._awaited = False

    def __await__(self) -> Generator[Any, None, Any]:
        self._awaited = True
        return self._aw.__await__()  # type: ignore[no-any-return]

    def __aiter__(self) -> Any:
        self._awaited = True
        return self._aw.__aiter__()

    def _refuse(self, *_: Any) -> Any:
        raise TypeError(_NOT_AWAITED.format(what="a result"))

    __getattr__ = _refuse
    __getitem__ = _refuse
    __iter__ = _refuse
    __len__ = _refuse
    __bool__ = _refuse
    __contains__ = _refuse

    def __repr__(self) -> str:
        return "<ScaiVaultClient call: await it>"

    def __del__(self) -> None:
        if not self._awaited:
            if asyncio.iscoroutine(self._aw):
                self._aw.close()
            warnings.warn(
                _NOT_AWAITED.format(what="a result") + " (it was never awaited, so it did nothing)",
                NotAwaitedWarning,
                stacklevel=1,
            )


class _Dual:
    """One API group of `ScaiVaultClient`: each method runs blocking outside an event loop
    and returns a `Pending` inside one."""

    def __init__(self, blocking: Any, awaited: Any) -> None:
        self._blocking = blocking
        self._awaited = awaited

    def __getattr__(self, name: str) -> Callable[..., Any]:
        blocking = getattr(self._blocking, name)
        awaited = getattr(self._awaited, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if _in_loop():
                return Pending(awaited(*args, **kwargs))
            return blocking(*args, **kwargs)

        call.__doc__ = blocking.__doc__
        call.__name__ = name
        return call


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class ScaiVaultClient(_ClientBase):
    """The tutorial's client: results from plain calls in synchronous code, awaitables inside
    a running event loop. New code should prefer `Client` or `AsyncClient`, whose types say
    which they return. Takes the same arguments as `Client`."""

    def _start(self, settings: Settings, tokens: Tokens, cache: SecretCache | None) -> None:
        # Both halves share one login and one cache.
        self._blocking = Client.__new__(Client)
        self._blocking.base_url = settings.base_url
        self._blocking._start(settings, tokens, cache)
        self._awaited = AsyncClient.__new__(AsyncClient)
        self._awaited.base_url = settings.base_url
        self._awaited._start(settings, tokens, cache)
        self.secrets: Any = _Dual(self._blocking.secrets, self._awaited.secrets)
        self.policies: Any = _Dual(self._blocking.policies, self._awaited.policies)
        self.rotation: Any = _Dual(self._blocking.rotation, self._awaited.rotation)
        self.audit: Any = _Dual(self._blocking.audit, self._awaited.audit)
        self.auth: Any = _Dual(self._blocking.auth, self._awaited.auth)
        self.subscriptions: Any = _Dual(self._blocking.subscriptions, self._awaited.subscriptions)

    def close(self) -> None:
        """Closes the blocking connection pool."""
        self._blocking.close()

    async def aclose(self) -> None:
        """Closes both connection pools."""
        await self._awaited.aclose()
        self._blocking.close()

    def __enter__(self) -> ScaiVaultClient:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> ScaiVaultClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


__all__ = ["AsyncClient", "Client", "NotAwaitedWarning", "Pending", "ScaiVaultClient", "SyncScaiVaultClient"]
