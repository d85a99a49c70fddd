"""Response cache backends: memory LRU/TTL, Redis, and Redis outages degrading to misses."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from mgx_agent.cache import (
    REDIS_KEY_PREFIX,
    CachedCompletion,
    MemoryResponseCache,
    NoCache,
    RedisResponseCache,
    build_response_cache,
    cache_key,
)

ANSWER = CachedCompletion(content="print('hi')", model="gpt-4o-mini", provider="openai")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_key_is_stable_and_sensitive_to_every_part() -> None:
    messages = [{"role": "user", "content": "hi"}]
    params = {"temperature": 0.2, "max_tokens": None}
    key = cache_key("m", messages, params)
    reordered = cache_key("m", [{"content": "hi", "role": "user"}], dict(reversed(params.items())))
    assert key == reordered
    assert len(key) == 64
    assert key != cache_key("other", messages, params)
    assert key != cache_key("m", [{"role": "user", "content": "hi!"}], params)
    assert key != cache_key("m", messages, {**params, "temperature": 0.3})


async def test_memory_cache_returns_what_was_stored() -> None:
    cache = MemoryResponseCache(max_entries=4, ttl_seconds=60)
    await cache.set("k", ANSWER)
    assert await cache.get("k") == ANSWER
    assert await cache.get("missing") is None
    assert cache.stats() == {"hits": 1, "misses": 1, "errors": 0, "entries": 1}


async def test_memory_cache_evicts_least_recently_used() -> None:
    cache = MemoryResponseCache(max_entries=2, ttl_seconds=60)
    await cache.set("a", ANSWER)
    await cache.set("b", ANSWER)
    assert await cache.get("a") == ANSWER  # "a" is now more recent than "b"
    await cache.set("c", ANSWER)
    assert await cache.get("b") is None
    assert await cache.get("a") == ANSWER
    assert await cache.get("c") == ANSWER
    assert cache.stats()["entries"] == 2


async def test_memory_cache_expires_entries_after_ttl() -> None:
    clock = ManualClock()
    cache = MemoryResponseCache(max_entries=10, ttl_seconds=30, clock=clock)
    await cache.set("k", ANSWER)
    clock.now += 29.9
    assert await cache.get("k") == ANSWER
    clock.now += 0.2
    assert await cache.get("k") is None
    assert cache.stats()["entries"] == 0


async def test_memory_cache_is_safe_under_concurrent_use() -> None:
    cache = MemoryResponseCache(max_entries=50, ttl_seconds=60)

    async def worker(n: int) -> None:
        for i in range(100):
            await cache.set(f"{n}-{i}", ANSWER)
            await cache.get(f"{n}-{i - 1}")
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(n) for n in range(10)))
    assert cache.stats()["entries"] == 50


async def test_no_cache_never_stores() -> None:
    cache = NoCache()
    await cache.set("k", ANSWER)
    assert await cache.get("k") is None
    assert cache.enabled is False


async def test_redis_cache_round_trip_with_prefix_and_ttl(redis_url: str) -> None:
    import redis.asyncio as redis

    cache = RedisResponseCache(redis_url, ttl_seconds=120)
    try:
        await cache.set("abc", ANSWER)
        assert await cache.get("abc") == ANSWER
        assert await cache.get("nope") is None
    finally:
        await cache.aclose()
    raw = redis.Redis.from_url(redis_url)
    try:
        ttl = await raw.ttl(REDIS_KEY_PREFIX + "abc")
    finally:
        await raw.aclose()
    assert 0 < ttl <= 120
    assert cache.stats() == {"hits": 1, "misses": 1, "errors": 0}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_redis_outage_degrades_to_miss_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    cache = RedisResponseCache(url, retry_after_seconds=0)
    caplog.set_level(logging.WARNING, logger="mgx_agent.cache")
    try:
        for _ in range(3):
            assert await cache.get("k") is None
            await cache.set("k", ANSWER)
    finally:
        await cache.aclose()
    warnings = [
        r for r in caplog.records if r.name == "mgx_agent.cache" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].getMessage()
    assert "hunter2" not in warnings[0].getMessage()
    stats = cache.stats()
    assert stats["errors"] == 6
    assert stats["misses"] == 3


async def test_redis_outage_backs_off_instead_of_retrying_every_call() -> None:
    cache = RedisResponseCache(f"redis://127.0.0.1:{closed_port()}/0", retry_after_seconds=60)
    try:
        for _ in range(5):
            assert await cache.get("k") is None
    finally:
        await cache.aclose()
    assert cache.stats()["errors"] == 1
    assert cache.stats()["misses"] == 5


def test_build_response_cache_picks_the_backend() -> None:
    assert isinstance(build_response_cache("none"), NoCache)
    memory = build_response_cache("memory", max_entries=3, ttl_seconds=10)
    assert isinstance(memory, MemoryResponseCache)
    assert isinstance(
        build_response_cache("redis", redis_url="redis://127.0.0.1:6379/15"), RedisResponseCache
    )
    with pytest.raises(ValueError, match="redis_url"):
        build_response_cache("redis")
    with pytest.raises(ValueError, match="unknown cache backend"):
        build_response_cache("disk")
