"""The opt-in read cache, as the AWS Secrets Manager caching client has: a secret's current
version is kept for `ttl` seconds; once `refresh_ahead` of that has passed, the next read still
answers from the cache and fetches a fresh copy in the background, so a read-heavy service
rarely waits on the vault. Thread-safe; values live only in this process's memory (never on
disk), and a write, delete or rotation through the same client drops the cached copy."""

from __future__ import annotations

import posixpath
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


def _key(path: str) -> str:
    """One key per secret however its path is spelt (`a/./b/`, `/a/b`)."""
    return posixpath.normpath(path.strip("/"))


Generation = tuple[int, int]


class SecretCache:
    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock  # seconds; a test gives its own
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Secret, float]] = OrderedDict()
        self._refreshing: set[str] = set()
        self._generation: dict[str, int] = {}
        self._epoch = 0  # moves when everything is dropped at once

    def lookup(self, path: str) -> tuple[Secret | None, bool]:
        """The cached copy (or `None`), and whether the caller should refresh it now (the
        first caller past `refresh_ahead` is told so; the others keep being served)."""
        key = _key(path)
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None, False
            secret, at = found
            age = now - at
            if age >= self.config.ttl:
                del self._entries[key]
                return None, False
            self._entries.move_to_end(key)
            refresh = age >= self.config.ttl * self.config.refresh_ahead and key not in self._refreshing
            if refresh:
                self._refreshing.add(key)
            return secret, refresh

    def generation(self, path: str) -> Generation:
        """Taken before a read: `store` keeps its answer only if nothing changed meanwhile."""
        with self._lock:
            return self._epoch, self._generation.get(_key(path), 0)

    def store(self, path: str, secret: Secret, generation: Generation) -> None:
        """Keeps `secret` unless the path changed since the read began (`generation`)."""
        key = _key(path)
        with self._lock:
            self._refreshing.discard(key)
            if (self._epoch, self._generation.get(key, 0)) != generation:
                return
            self._entries[key] = (secret, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self.config.max_entries:
                self._entries.popitem(last=False)

    def refresh_failed(self, path: str) -> None:
        with self._lock:
            self._refreshing.discard(_key(path))

    def invalidate(self, path: str) -> None:
        """Drops the copy of `path` (`"*"`: every copy)."""
        with self._lock:
            if path == "*":
                self._entries.clear()
                self._generation.clear()
                self._epoch += 1
                return
            key = _key(path)
            self._entries.pop(key, None)
            self._generation[key] = self._generation.get(key, 0) + 1

    def clear(self) -> None:
        self.invalidate("*")
