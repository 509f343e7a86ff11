"""The clients. One description of each call (`_Call`), executed blocking or awaited.

`SyncScaiVaultClient` always blocks. `ScaiVaultClient` looks at the calling thread: inside a
running event loop it returns an awaitable (or an async iterator for listings); elsewhere it
runs the call and returns the result, so a synchronous `load_config()` at start-up and an async
request handler can share one client class.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

import httpx

from .errors import RateLimitError, ScaiVaultError, ServiceUnavailableError, from_response
from .models import BatchMetadata, BatchResult, Secret, SecretInfo, WriteResult

__version__ = "0.1.0"
USER_AGENT = f"scaivault-python/{__version__}"
_REFRESH_MARGIN = 60.0


@dataclass
class _Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    parse: Callable[[Any], Any] = lambda d: d
    auth: bool = True


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON fields without the ones left unset."""
    return {k: v for k, v in fields.items() if v is not None}


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters: unset ones dropped, booleans as the server reads them."""
    return {k: (("true" if v else "false") if isinstance(v, bool) else v) for k, v in _clean(params).items()}


class _Core:
    """Shared state: configuration, token handling, retries."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_connections: int = 20,
    ) -> None:
        if not token and not (client_id and client_secret):
            raise ValueError("give token=, or client_id= and client_secret=")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._token_expires: float | None = None
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._lock = threading.Lock()
        self.secrets = SecretsAPI(self)
        self.policies = PoliciesAPI(self)
        self.rotation = RotationAPI(self)
        self.audit = AuditAPI(self)
        self.auth = AuthAPI(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- tokens -------------------------------------------------------------------------
    def _needs_token(self) -> bool:
        if self._client_id is None:
            return False
        return self._token is None or (self._token_expires is not None and self._token_expires - time.time() < _REFRESH_MARGIN)

    def _token_call(self) -> _Call:
        return _Call(
            "POST",
            "/v1/auth/token",
            json={"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret},
            auth=False,
        )

    def _set_token(self, body: dict[str, Any]) -> None:
        self._token = body["access_token"]
        self._token_expires = time.time() + float(body.get("expires_in", 3600))

    def _headers(self, call: _Call) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT}
        if call.auth and self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None and resp.headers.get("retry-after"):
            try:
                return float(resp.headers["retry-after"])
            except ValueError:
                pass
        return self._backoff * (2**attempt) * (0.5 + random.random())

    @staticmethod
    def _should_retry(status: int) -> bool:
        return status in (429, 503)

    def _refreshable(self, err: ScaiVaultError) -> bool:
        return self._client_id is not None and err.status_code == 401

    @staticmethod
    def _decode(resp: httpx.Response, call: _Call) -> Any:
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = None
        if resp.status_code >= 400:
            raise from_response(resp.status_code, body, resp.headers)
        return call.parse(body)

    @staticmethod
    def _transport_error(e: Exception) -> ScaiVaultError:
        code = "timeout" if isinstance(e, httpx.TimeoutException) else "connection_error"
        return ScaiVaultError(code, f"cannot reach the vault ({type(e).__name__})")

    # -- blocking execution ------------------------------------------------------------
    def _sync_http(self) -> httpx.Client:
        with self._lock:
            if getattr(self, "_sync_client", None) is None:
                self._sync_client = httpx.Client(base_url=self.base_url, timeout=self._timeout, limits=self._limits)
            return self._sync_client

    def _send_sync(self, call: _Call) -> httpx.Response:
        http = self._sync_http()
        attempt = 0
        while True:
            try:
                resp = http.request(call.method, call.path, params=call.params, json=call.json, headers=self._headers(call))
            except httpx.TransportError as e:
                if attempt < self._retries:
                    time.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise self._transport_error(e) from None
            if self._should_retry(resp.status_code) and attempt < self._retries:
                time.sleep(self._delay(attempt, resp))
                attempt += 1
                continue
            return resp

    def _run_sync(self, call: _Call) -> Any:
        if call.auth and self._needs_token():
            self._set_token(self._decode(self._send_sync(self._token_call()), _Call("POST", "")))
        try:
            return self._decode(self._send_sync(call), call)
        except ScaiVaultError as e:
            if call.auth and self._refreshable(e):
                self._token = None
                self._set_token(self._decode(self._send_sync(self._token_call()), _Call("POST", "")))
                return self._decode(self._send_sync(call), call)
            raise

    def _pages_sync(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Iterator[Any]:
        cursor = None
        while True:
            page = self._run_sync(make(cursor))
            for x in page.get(key, []):
                yield item(x)
            cursor = page.get("cursor")
            if not page.get("has_more") or not cursor:
                return

    # -- awaited execution -------------------------------------------------------------
    def _async_http(self) -> httpx.AsyncClient:
        if getattr(self, "_async_client", None) is None:
            self._async_client = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout, limits=self._limits)
        return self._async_client

    async def _send_async(self, call: _Call) -> httpx.Response:
        http = self._async_http()
        attempt = 0
        while True:
            try:
                resp = await http.request(call.method, call.path, params=call.params, json=call.json, headers=self._headers(call))
            except httpx.TransportError as e:
                if attempt < self._retries:
                    await asyncio.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise self._transport_error(e) from None
            if self._should_retry(resp.status_code) and attempt < self._retries:
                await asyncio.sleep(self._delay(attempt, resp))
                attempt += 1
                continue
            return resp

    async def _run_async(self, call: _Call) -> Any:
        if call.auth and self._needs_token():
            self._set_token(self._decode(await self._send_async(self._token_call()), _Call("POST", "")))
        try:
            return self._decode(await self._send_async(call), call)
        except ScaiVaultError as e:
            if call.auth and self._refreshable(e):
                self._token = None
                self._set_token(self._decode(await self._send_async(self._token_call()), _Call("POST", "")))
                return self._decode(await self._send_async(call), call)
            raise

    async def _pages_async(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> AsyncIterator[Any]:
        cursor = None
        while True:
            page = await self._run_async(make(cursor))
            for x in page.get(key, []):
                yield item(x)
            cursor = page.get("cursor")
            if not page.get("has_more") or not cursor:
                return

    # -- dispatch (overridden per client class) ----------------------------------------
    def _dispatch(self, call: _Call) -> Any:
        raise NotImplementedError

    def _paginate(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Any:
        raise NotImplementedError

    def _collect(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Any:
        """Every page as one list (for small collections that were always answered whole)."""
        raise NotImplementedError


class SyncScaiVaultClient(_Core):
    """Blocking client."""

    def _dispatch(self, call: _Call) -> Any:
        return self._run_sync(call)

    def _paginate(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Iterator[Any]:
        return self._pages_sync(make, key, item)

    def _collect(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Any:
        return list(self._pages_sync(make, key, item))

    def close(self) -> None:
        if getattr(self, "_sync_client", None) is not None:
            self._sync_client.close()
            self._sync_client = None

    def __enter__(self) -> "SyncScaiVaultClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ScaiVaultClient(_Core):
    """Awaitable inside a running event loop; plain calls return results elsewhere."""

    @staticmethod
    def _in_loop() -> bool:
        try:
            asyncio.get_running_loop()
            return True
        except RuntimeError:
            return False

    def _dispatch(self, call: _Call) -> Any:
        return self._run_async(call) if self._in_loop() else self._run_sync(call)

    def _paginate(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Any:
        return self._pages_async(make, key, item) if self._in_loop() else self._pages_sync(make, key, item)

    def _collect(self, make: Callable[[str | None], _Call], key: str, item: Callable[[Any], Any]) -> Any:
        if not self._in_loop():
            return list(self._pages_sync(make, key, item))

        async def collect() -> list[Any]:
            return [x async for x in self._pages_async(make, key, item)]

        return collect()

    async def aclose(self) -> None:
        if getattr(self, "_async_client", None) is not None:
            await self._async_client.aclose()
            self._async_client = None
        if getattr(self, "_sync_client", None) is not None:
            self._sync_client.close()
            self._sync_client = None

    def close(self) -> None:
        if getattr(self, "_sync_client", None) is not None:
            self._sync_client.close()
            self._sync_client = None

    async def __aenter__(self) -> "ScaiVaultClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> "ScaiVaultClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _secret_path(path: str) -> str:
    return path.strip("/")


class SecretsAPI:
    """`client.secrets`: read, write, list, versions, delete, restore, metadata, batch."""

    def __init__(self, c: _Core) -> None:
        self._c = c

    def read(self, path: str, version: int | None = None) -> Any:
        """The current (or a given) version → `Secret`."""
        return self._c._dispatch(
            _Call("GET", f"/v1/secrets/{_secret_path(path)}", params=_query({"version": version}), parse=Secret.from_json)
        )

    def write(
        self,
        path: str,
        data: dict[str, Any],
        secret_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_versions: int | None = None,
        expires_in: str | None = None,
        rotation_policy_id: str | None = None,
        cas: int | None = None,
    ) -> Any:
        """Appends a version → `WriteResult` (`created` is true for the first)."""
        body: dict[str, Any] = {"data": data}
        if secret_type is not None:
            body["secret_type"] = getattr(secret_type, "value", secret_type)
        if metadata is not None:
            body["metadata"] = metadata.to_json() if hasattr(metadata, "to_json") else metadata
        options = _clean({"max_versions": max_versions, "expires_in": expires_in, "rotation_policy_id": rotation_policy_id, "cas": cas})
        if options:
            body["options"] = options
        return self._c._dispatch(_Call("PUT", f"/v1/secrets/{_secret_path(path)}", json=body, parse=WriteResult.from_json))

    def list(self, prefix: str = "", page_size: int = 100) -> Any:
        """Every secret under `prefix` (all pages) as `SecretInfo`."""
        return self._c._paginate(
            lambda cursor: _Call("GET", "/v1/secrets", params=_query({"prefix": prefix, "limit": page_size, "cursor": cursor})),
            "secrets",
            SecretInfo.from_json,
        )

    def versions(self, path: str) -> Any:
        return self._c._dispatch(_Call("GET", f"/v1/versions/{_secret_path(path)}", parse=lambda d: d["versions"]))

    def delete(self, path: str, permanent: bool = False) -> Any:
        return self._c._dispatch(_Call("DELETE", f"/v1/secrets/{_secret_path(path)}", params=_query({"permanent": permanent or None})))

    def restore(self, path: str) -> Any:
        return self._c._dispatch(_Call("POST", f"/v1/restore/{_secret_path(path)}", parse=SecretInfo.from_json))

    def read_metadata(self, path: str) -> Any:
        """Metadata without the value (needs only `secrets:list`) → `SecretInfo`."""
        return self._c._dispatch(_Call("GET", f"/v1/metadata/{_secret_path(path)}", parse=SecretInfo.from_json))

    def update_metadata(self, path: str, metadata: dict[str, Any]) -> Any:
        """Merges `metadata` (a `None` value removes a key); no new version."""
        return self._c._dispatch(
            _Call("PATCH", f"/v1/metadata/{_secret_path(path)}", json={"metadata": metadata}, parse=SecretInfo.from_json)
        )

    def batch_read(self, paths: list[str], include_metadata: bool = False, version: int | None = None) -> Any:
        def parse(d: dict[str, Any]) -> BatchResult:
            return BatchResult(
                secrets={p: Secret.from_json(s, path=p) for p, s in d.get("secrets", {}).items()},
                errors=d.get("errors", {}),
            )

        options = _clean({"include_metadata": include_metadata or None, "version": version})
        return self._c._dispatch(_Call("POST", "/v1/secrets/batch", json={"paths": list(paths), "options": options}, parse=parse))

    def batch_metadata(self, paths: list[str], expand_wildcards: bool = False) -> Any:
        """Metadata (never values) of up to 100 paths; with `expand_wildcards`, entries may be
        patterns (`billing/**`). Returns `BatchMetadata` with `.secrets` (path -> `SecretInfo`)
        and `.errors` (path -> `{code, message}`)."""

        def parse(d: dict[str, Any]) -> BatchMetadata:
            return BatchMetadata(
                secrets={p: SecretInfo.from_json(s) for p, s in d.get("secrets", {}).items()},
                errors=d.get("errors", {}),
            )

        body = {"paths": list(paths), "expand_wildcards": expand_wildcards}
        return self._c._dispatch(_Call("POST", "/v1/secrets/batch/metadata", json=body, parse=parse))


class PoliciesAPI:
    """`client.policies`: access policies, bindings and the dry-run `test`."""

    def __init__(self, c: _Core) -> None:
        self._c = c

    def list(self, include_inactive: bool = False) -> Any:
        """Every policy (all pages), by name."""
        return self._c._collect(
            lambda cursor: _Call("GET", "/v1/policies", params=_query({"include_inactive": include_inactive or None, "limit": 1000, "cursor": cursor})),
            "policies",
            lambda p: p,
        )

    def get(self, policy_id: str) -> Any:
        return self._c._dispatch(_Call("GET", f"/v1/policies/{policy_id}"))

    def create(self, name: str, rules: list[dict[str, Any]], description: str | None = None) -> Any:
        return self._c._dispatch(_Call("POST", "/v1/policies", json=_clean({"name": name, "rules": rules, "description": description})))

    def update(self, policy_id: str, **fields: Any) -> Any:
        return self._c._dispatch(_Call("PATCH", f"/v1/policies/{policy_id}", json=fields))

    def delete(self, policy_id: str, force: bool = False) -> Any:
        return self._c._dispatch(_Call("DELETE", f"/v1/policies/{policy_id}", params=_query({"force": force or None})))

    def bindings(self, policy_id: str) -> Any:
        return self._c._dispatch(_Call("GET", f"/v1/policies/{policy_id}/bindings", parse=lambda d: d["bindings"]))

    def bind(self, policy_id: str, identity_id: str, identity_type: str | None = None, expires_at: str | None = None) -> Any:
        body = _clean({"identity_id": identity_id, "identity_type": identity_type, "expires_at": expires_at})
        return self._c._dispatch(_Call("POST", f"/v1/policies/{policy_id}/bindings", json=body))

    def unbind(self, policy_id: str, binding_id: str) -> Any:
        return self._c._dispatch(_Call("DELETE", f"/v1/policies/{policy_id}/bindings/{binding_id}"))

    def test(self, identity_id: str, path: str, permission: str, context: dict[str, Any] | None = None) -> Any:
        """Would `identity_id` get `permission` on `path`? `{allowed, policy_id, rule_index, …}`."""
        body: dict[str, Any] = {"identity_id": identity_id, "path": path, "permission": permission}
        if context:
            body["context"] = context
        return self._c._dispatch(_Call("POST", "/v1/policies/test", json=body))


class RotationAPI:
    """`client.rotation`: rotation policies (`rot_<name>`), attachment, rotate-now, status."""

    def __init__(self, c: _Core) -> None:
        self._c = c

    def list_policies(self) -> Any:
        """Every rotation policy (all pages), by name."""
        return self._c._collect(
            lambda cursor: _Call("GET", "/v1/rotation/policies", params=_query({"limit": 1000, "cursor": cursor})),
            "data",
            lambda p: p,
        )

    def create_policy(self, name: str, interval: str, **fields: Any) -> Any:
        return self._c._dispatch(_Call("POST", "/v1/rotation/policies", json={"name": name, "interval": interval, **fields}))

    def rotate(self, policy_id: str, secret_path: str | None = None) -> Any:
        return self._c._dispatch(_Call("POST", f"/v1/rotation/policies/{policy_id}/rotate", json=_clean({"secret_path": secret_path})))

    def assign(self, policy_id: str, secret_path: str) -> Any:
        return self._c._dispatch(_Call("POST", f"/v1/rotation/policies/{policy_id}/secrets", json={"secret_path": secret_path}))

    def status(self, path: str | None = None) -> Any:
        return self._c._dispatch(_Call("GET", "/v1/rotation/status", params=_query({"path": path}), parse=lambda d: d["secrets"]))


def _times(filters: dict[str, Any]) -> None:
    """`from_` (a keyword Python reserves) becomes `from`; datetimes become RFC 3339."""
    if "from_" in filters:
        filters["from"] = filters.pop("from_")
    for k in ("from", "to"):
        if hasattr(filters.get(k), "isoformat"):
            filters[k] = filters[k].isoformat().replace("+00:00", "Z")


class AuditAPI:
    """`client.audit`: the audit log."""

    def __init__(self, c: _Core) -> None:
        self._c = c

    def query(self, page_size: int = 100, **filters: Any) -> Any:
        """Entries newest first, every page: filters `from_`, `to`, `action`, `identity_id`,
        `identity_type`, `path_prefix`, `success`, `source_ip`, `request_id`."""
        _times(filters)
        return self._c._paginate(
            lambda cursor: _Call("GET", "/v1/audit/logs", params=_query({**filters, "limit": page_size, "cursor": cursor})),
            "logs",
            lambda e: e,
        )

    def summary(self, **filters: Any) -> Any:
        """Counts (`total_events`, `failures`, `by_action`, `by_identity`, `by_path`,
        `by_hour`): filters `from_`, `to`, `identity_id`, `secret_path`."""
        _times(filters)
        return self._c._dispatch(_Call("GET", "/v1/audit/summary", params=_query(filters)))

    def verify(self, fast: bool = False) -> Any:
        return self._c._dispatch(_Call("GET", "/v1/audit/verify", params=_query({"fast": fast or None})))


class AuthAPI:
    def __init__(self, c: _Core) -> None:
        self._c = c

    def whoami(self) -> Any:
        return self._c._dispatch(_Call("GET", "/v1/auth/whoami"))

    def create_credential(self, identity_id: str, scopes: list[str]) -> Any:
        """Issues a client credential for a service account; the secret is in the answer
        (`client_secret`) and nowhere else, ever. Needs an admin token."""
        return self._c._dispatch(
            _Call("POST", f"/v1/identities/{identity_id}/credentials", json={"scopes": scopes})
        )

    def list_credentials(self, identity_id: str) -> Any:
        """A service account's client credentials: `credential_id`, `scopes`, `created_at`
        (never the secrets). Needs an admin token."""
        return self._c._dispatch(_Call("GET", f"/v1/identities/{identity_id}/credentials"))

    def revoke_credential(self, identity_id: str, credential_id: str) -> Any:
        """Revokes one client credential; the tokens it minted stop working with it."""
        return self._c._dispatch(
            _Call("DELETE", f"/v1/identities/{identity_id}/credentials/{credential_id}")
        )


__all__ = [
    "ScaiVaultClient",
    "SyncScaiVaultClient",
    "RateLimitError",
    "ServiceUnavailableError",
]
