"""A small TTL cache keyed by a hash of the Authorization header (never the secret itself)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
MAX_ENTRIES = 4096


def header_key(authorization: str) -> str:
    return hashlib.sha256(authorization.encode("utf-8")).hexdigest()


class TTLCache(Generic[V]):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._items: dict[str, tuple[V, float]] = {}

    def get(self, key: str) -> tuple[bool, V | None]:
        """(found, value): an expired entry is not found."""
        item = self._items.get(key)
        if item is None:
            return False, None
        if item[1] <= self._clock():
            del self._items[key]
            return False, None
        return True, item[0]

    def put(self, key: str, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._items) >= self._max:
            now = self._clock()
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
            while len(self._items) >= self._max:  # still full of live entries: drop the oldest inserted
                del self._items[next(iter(self._items))]
        self._items[key] = (value, self._clock() + ttl)
