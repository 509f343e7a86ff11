"""The opt-in read cache, as the AWS Secrets Manager caching client has: a secret's current
version is kept for `ttl` seconds; once `refresh_ahead` of that has passed, the next read still
answers from the cache and fetches a fresh copy in the background, so a read-heavy service
rarely waits on the vault. Thread-safe; values live only in this process's memory (never on
disk), and a write, delete or rotation through the same client drops the cached copy."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .models import Secret


@dataclass(frozen=True)
class CacheConfig:
    """`ttl` seconds a copy is served; refresh starts after `refresh_ahead * ttl`;
    at most `max_entries` secrets are kept (least recently used go first)."""

    ttl: float = 300.0
    refresh_ahead: float = 0.8
    max_entries: int = 1024

    def __post_init__(self) -> None:
        if self.ttl <= 0 or not 0 < self.refresh_ahead <= 1 or self.max_entries < 1:
            raise ValueError("CacheConfig needs ttl > 0, 0 < refresh_ahead <= 1 and max_entries >= 1")


class SecretCache:
    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock  # seconds; a test gives its own
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Secret, float]] = OrderedDict()
        self._refreshing: set[str] = set()
        self._generation: dict[str, int] = {}

    def lookup(self, path: str) -> tuple[Secret | None, bool]:
        """The cached copy (or `None`), and whether the caller should refresh it now (the
        first caller past `refresh_ahead` is told so; the others keep being served)."""
        now = self._clock()
        with self._lock:
            found = self._entries.get(path)
            if found is None:
                return None, False
            secret, at = found
            age = now - at
            if age >= self.config.ttl:
                del self._entries[path]
                return None, False
            self._entries.move_to_end(path)
            refresh = age >= self.config.ttl * self.config.refresh_ahead and path not in self._refreshing
            if refresh:
                self._refreshing.add(path)
            return secret, refresh

    def generation(self, path: str) -> int:
        with self._lock:
            return self._generation.get(path, 0)

    def store(self, path: str, secret: Secret, generation: int) -> None:
        """Keeps `secret` unless the path changed since the read began (`generation`)."""
        with self._lock:
            self._refreshing.discard(path)
            if self._generation.get(path, 0) != generation:
                return
            self._entries[path] = (secret, self._clock())
            self._entries.move_to_end(path)
            while len(self._entries) > self.config.max_entries:
                self._entries.popitem(last=False)

    def refresh_failed(self, path: str) -> None:
        with self._lock:
            self._refreshing.discard(path)

    def invalidate(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)
            self._generation[path] = self._generation.get(path, 0) + 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation.clear()
