"""Request rate limits: one token bucket per caller identity.

A bucket holds up to ``burst`` tokens and refills at ``per_minute / 60`` tokens a second; every
request takes one, and a request that finds less than one token is refused with the time until
the next one. Buckets live in this process (``MemoryTokenBuckets``) or, when Redis is
configured, in Redis (``RedisTokenBuckets``: one atomic Lua script, clocked by the Redis server,
keys expiring once full), so every process and replica shares them. ``RateLimiter`` prefers
Redis and falls back to the process's own buckets while Redis is unreachable: the limiter's store
being down never fails a request.

No HTTP here: ``backend.app.limits`` decides who the caller is and turns a refusal into a 429.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

logger = logging.getLogger("backend.limits")

REDIS_KEY_PREFIX = "mgx:rate-limit:"
# A Redis call slower than this counts as Redis being down; the request is limited locally instead.
REDIS_TIMEOUT_SECONDS = 0.5
# After a failure, Redis is tried again this long later (in between, every request would wait on it).
REDIS_RETRY_SECONDS = 5.0
# Buckets kept in memory at most; idle full buckets go first, then the least recently used.
MAX_MEMORY_BUCKETS = 50_000

# Refill by the server's clock (TIME), so replicas with skewed clocks still agree. Stored as
# milliseconds, which a Lua number renders exactly.
_TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(stored[1])
local at = tonumber(stored[2])
if tokens == nil or at == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class RateLimitPolicy:
    per_minute: int
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    @property
    def per_second(self) -> float:
        return self.per_minute / 60

    def decide(self, allowed: bool, tokens: float) -> RateDecision:
        """The decision for a bucket left with ``tokens`` after this request."""
        return RateDecision(
            allowed=allowed,
            limit=self.burst,
            remaining=max(0, math.floor(tokens)),
            retry_after_seconds=0.0 if allowed else (1 - tokens) / self.per_second,
            reset_seconds=(self.burst - tokens) / self.per_second,
        )


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: float
    """Time until the next request would be accepted (0 when this one was)."""
    reset_seconds: float
    """Time until the bucket is full again."""

    @property
    def retry_after(self) -> int:
        """``retry_after_seconds`` as the whole seconds of a ``Retry-After`` header (rounded up)."""
        return max(1, math.ceil(self.retry_after_seconds))


@dataclass
class _Bucket:
    tokens: float
    at: float


class MemoryTokenBuckets:
    """Token buckets of this process."""

    def __init__(
        self,
        policy: RateLimitPolicy,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_MEMORY_BUCKETS,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, identity: str) -> RateDecision:
        now = self._clock()
        bucket = self._buckets.pop(identity, None)
        if bucket is None:
            bucket = _Bucket(float(self.policy.burst), now)
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket = _Bucket(min(self.policy.burst, bucket.tokens + elapsed * self.policy.per_second), now)
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        self._buckets[identity] = bucket  # most recently used last
        if len(self._buckets) > self._max_buckets:
            self._evict(now)
        return self.policy.decide(allowed, bucket.tokens)

    def _evict(self, now: float) -> None:
        """Forget full buckets (a new bucket starts full, so nothing changes), then, if that was
        not enough, the least recently used ones."""
        refill_seconds = self.policy.burst / self.policy.per_second
        for identity in [key for key, bucket in self._buckets.items() if now - bucket.at >= refill_seconds]:
            del self._buckets[identity]
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)


class RedisTokenBuckets:
    """Token buckets shared through Redis by every process using the same database."""

    def __init__(self, policy: RateLimitPolicy, redis: Any, key_prefix: str = REDIS_KEY_PREFIX) -> None:
        self.policy = policy
        self.redis = redis
        self._key_prefix = key_prefix
        self._script = redis.register_script(_TOKEN_BUCKET_LUA)

    async def take(self, identity: str) -> RateDecision:
        allowed, tokens = await self._script(
            keys=[self._key_prefix + identity], args=[self.policy.burst, self.policy.per_second / 1000]
        )
        return self.policy.decide(bool(allowed), float(tokens))


class RateLimiter:
    """Takes a token for each request: from Redis when the app has a Redis client and it answers,
    else from this process's buckets (one warning when Redis goes away, one note when it is back)."""

    def __init__(self, policy: RateLimitPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._memory = MemoryTokenBuckets(policy, clock)
        self._shared: RedisTokenBuckets | None = None
        self._redis_down = False
        self._redis_retry_at = 0.0

    @property
    def store(self) -> str:
        """Where the last decision was taken: ``redis`` or ``memory``."""
        return "redis" if self._shared is not None and not self._redis_down else "memory"

    async def take(self, identity: str, redis: Any | None = None) -> RateDecision:
        if redis is not None and self._clock() >= self._redis_retry_at:
            if self._shared is None or self._shared.redis is not redis:
                self._shared = RedisTokenBuckets(self.policy, redis)
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    decision = await self._shared.take(identity)
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)
            else:
                if self._redis_down:
                    self._redis_down = False
                    logger.info("rate limits are shared through Redis again")
                return decision
        return self._memory.take(identity)

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_retry_at = self._clock() + REDIS_RETRY_SECONDS
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "rate limits fall back to per-process buckets: Redis is unavailable (%s: %s)",
                type(exc).__name__,
                exc,
            )
