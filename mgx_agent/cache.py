"""The LLM response cache: none, in-process memory (LRU + TTL) or Redis.

A cache entry is keyed by the sha256 of the canonical JSON of (model, messages, params), so
an identical call asked again - by the same run or by a later run of the same task - is
answered without a provider round trip. Only replies their action accepted are stored (the
session's ``accept``): a reply that failed its format check, was cut off or came from a
corrective re-ask is never replayed, so a new run of a failed task reaches the model again. The cache is an optimisation only: every backend
turns its own failures into misses, so a cache can never fail a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

logger = logging.getLogger("mgx_agent.cache")

REDIS_KEY_PREFIX = "mgx:llmcache:"


@dataclass(frozen=True)
class CachedCompletion:
    """What is kept of a completion: enough to answer the same call again."""

    content: str
    model: str
    provider: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> CachedCompletion:
        data = json.loads(raw)
        return cls(
            content=str(data["content"]), model=str(data["model"]), provider=str(data["provider"])
        )


def cache_key(model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of the call; equal calls give equal keys."""
    canonical = json.dumps(
        {"model": model, "messages": [dict(m) for m in messages], "params": dict(params)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache(Protocol):
    # False for NoCache: callers then skip cache bookkeeping (no "misses" without a cache).
    enabled: bool

    async def get(self, key: str) -> CachedCompletion | None: ...

    async def set(self, key: str, value: CachedCompletion) -> None: ...

    async def delete(self, key: str) -> None: ...

    def stats(self) -> dict[str, int]: ...

    async def aclose(self) -> None: ...


class _CacheCounters:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors}


class NoCache:
    """Caching switched off: every lookup misses and nothing is stored."""

    enabled = False

    def __init__(self) -> None:
        self._counters = _CacheCounters()

    async def get(self, key: str) -> CachedCompletion | None:
        self._counters.misses += 1
        return None

    async def set(self, key: str, value: CachedCompletion) -> None:
        return None

    async def delete(self, key: str) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {**self._counters.as_dict(), "entries": 0}

    async def aclose(self) -> None:
        return None


class MemoryResponseCache:
    """Least-recently-used cache with a time-to-live, shared by every run in the process.

    A lock guards the dict because one instance may serve several event loops (the API's and
    a CLI's, or test loops); no await happens while it is held.
    """

    enabled = True

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedCompletion]] = OrderedDict()
        self._lock = threading.Lock()
        self._counters = _CacheCounters()

    async def get(self, key: str) -> CachedCompletion | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] <= self._clock():
                del self._entries[key]
                entry = None
            if entry is None:
                self._counters.misses += 1
                return None
            self._entries.move_to_end(key)
            self._counters.hits += 1
            return entry[1]

    async def set(self, key: str, value: CachedCompletion) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counters.as_dict(), "entries": len(self._entries)}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    async def aclose(self) -> None:
        return None


class RedisResponseCache:
    """Cache in Redis, shared between processes and replicas, expiring entries after a TTL.

    When Redis cannot be reached the cache logs one warning, counts an error and answers as a
    miss; it then leaves Redis alone for ``retry_after_seconds`` so a down Redis does not add
    a connect timeout to every LLM call. The warning is logged again only after Redis has
    worked in between.
    """

    enabled = True

    def __init__(
        self,
        url: str,
        ttl_seconds: float = 3600.0,
        *,
        socket_timeout_seconds: float = 0.5,
        retry_after_seconds: float = 5.0,
    ) -> None:
        import redis.asyncio as redis

        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._url = url
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._retry_after = retry_after_seconds
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds,
        )
        self._counters = _CacheCounters()
        self._unavailable_until = 0.0
        self._warned = False

    async def get(self, key: str) -> CachedCompletion | None:
        if self._in_cooldown():
            self._counters.misses += 1
            return None
        try:
            raw = await self._redis.get(REDIS_KEY_PREFIX + key)
        except Exception as exc:  # any Redis failure is a miss; see class docstring
            self._note_outage(exc)
            self._counters.misses += 1
            return None
        self._note_recovery()
        if raw is None:
            self._counters.misses += 1
            return None
        try:
            value = CachedCompletion.from_json(raw)
        except (ValueError, KeyError, TypeError):
            # An entry written by an incompatible version: treat as absent.
            self._counters.misses += 1
            return None
        self._counters.hits += 1
        return value

    async def set(self, key: str, value: CachedCompletion) -> None:
        if self._in_cooldown():
            return
        try:
            await self._redis.set(REDIS_KEY_PREFIX + key, value.to_json(), px=self._ttl_ms)
        except Exception as exc:  # a failed write only loses a future hit
            self._note_outage(exc)
            return
        self._note_recovery()

    async def delete(self, key: str) -> None:
        if self._in_cooldown():
            return
        try:
            await self._redis.delete(REDIS_KEY_PREFIX + key)
        except Exception as exc:  # an entry left behind is refused again by its action
            self._note_outage(exc)
            return
        self._note_recovery()

    def stats(self) -> dict[str, int]:
        return self._counters.as_dict()

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except Exception as exc:  # closing a broken connection must not fail shutdown
            logger.debug("closing the Redis response cache failed: %s", exc)

    def _in_cooldown(self) -> bool:
        return time.monotonic() < self._unavailable_until

    def _note_outage(self, exc: Exception) -> None:
        self._counters.errors += 1
        self._unavailable_until = time.monotonic() + self._retry_after
        if not self._warned:
            self._warned = True
            logger.warning(
                "Redis response cache at %s is unavailable (%s: %s); "
                "LLM responses are not cached until it is back",
                _redact_url(self._url),
                type(exc).__name__,
                exc,
            )

    def _note_recovery(self) -> None:
        if self._warned:
            self._warned = False
            logger.info("Redis response cache at %s is available again", _redact_url(self._url))


def _redact_url(url: str) -> str:
    """The URL without a password, for log lines."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"


CACHE_BACKENDS = ("none", "memory", "redis")


def build_response_cache(
    backend: str,
    *,
    max_entries: int = 1024,
    ttl_seconds: float = 3600.0,
    redis_url: str | None = None,
) -> ResponseCache:
    """The cache for ``backend`` ("none" | "memory" | "redis")."""
    backend = backend.strip().lower()
    if backend == "none":
        return NoCache()
    if backend == "memory":
        return MemoryResponseCache(max_entries=max_entries, ttl_seconds=ttl_seconds)
    if backend == "redis":
        if not redis_url:
            raise ValueError("the redis cache backend needs a redis_url (set REDIS_URL)")
        return RedisResponseCache(redis_url, ttl_seconds)
    expected = ", ".join(CACHE_BACKENDS)
    raise ValueError(f"unknown cache backend {backend!r}; expected one of {expected}")
