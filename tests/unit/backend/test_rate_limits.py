"""Token buckets (``backend.services.rate_limits``) in memory and in a real Redis, the fallback to
memory while Redis is unreachable, and the per-caller stream slots."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from backend.services.rate_limits import (
    REDIS_KEY_PREFIX,
    REDIS_RETRY_SECONDS,
    MemoryTokenBuckets,
    RateLimiter,
    RateLimitPolicy,
    RedisTokenBuckets,
)
from backend.services.stream_slots import StreamSlots


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


class TestMemoryBuckets:
    def test_a_burst_is_allowed_then_refused_with_the_time_to_the_next_token(self, clock: FakeClock) -> None:
        buckets = MemoryTokenBuckets(RateLimitPolicy(per_minute=60, burst=3), clock)
        decisions = [buckets.take("ip:10.0.0.1") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert decisions[0].limit == 3
        refused = decisions[-1]
        assert refused.retry_after_seconds == pytest.approx(1.0)
        assert refused.retry_after == 1
        assert refused.reset_seconds == pytest.approx(3.0)

    def test_the_bucket_refills_at_the_sustained_rate(self, clock: FakeClock) -> None:
        buckets = MemoryTokenBuckets(RateLimitPolicy(per_minute=60, burst=2), clock)
        assert [buckets.take("a").allowed for _ in range(3)] == [True, True, False]
        clock.now += 0.5
        half = buckets.take("a")
        assert not half.allowed and half.retry_after_seconds == pytest.approx(0.5)
        clock.now += 0.5
        assert buckets.take("a").allowed  # one token came back after 1 s
        assert not buckets.take("a").allowed
        clock.now += 60
        assert [buckets.take("a").allowed for _ in range(3)] == [True, True, False]  # never above the burst

    def test_retry_after_is_rounded_up_to_whole_seconds(self, clock: FakeClock) -> None:
        buckets = MemoryTokenBuckets(RateLimitPolicy(per_minute=6, burst=1), clock)
        assert buckets.take("a").allowed
        clock.now += 0.2
        refused = buckets.take("a")
        assert refused.retry_after_seconds == pytest.approx(9.8)
        assert refused.retry_after == 10

    def test_identities_have_separate_buckets(self, clock: FakeClock) -> None:
        buckets = MemoryTokenBuckets(RateLimitPolicy(per_minute=60, burst=1), clock)
        assert buckets.take("key:alice").allowed
        assert not buckets.take("key:alice").allowed
        assert buckets.take("key:bob").allowed

    def test_full_buckets_are_forgotten_first_when_too_many_are_kept(self, clock: FakeClock) -> None:
        buckets = MemoryTokenBuckets(RateLimitPolicy(per_minute=60, burst=2), clock, max_buckets=2)
        buckets.take("idle")
        clock.now += 10  # "idle" is full again
        buckets.take("busy")
        buckets.take("busy")
        buckets.take("new")
        assert len(buckets) == 2
        assert not buckets.take("busy").allowed  # the active bucket was kept, still empty


class TestRedisBuckets:
    async def test_two_limiters_on_one_redis_share_the_bucket(self, redis_url: str) -> None:
        policy = RateLimitPolicy(per_minute=60, burst=2)
        clients = [redis_asyncio.Redis.from_url(redis_url) for _ in range(2)]
        try:
            first, second = RateLimiter(policy), RateLimiter(policy)
            assert (await first.take("key:alice", clients[0])).allowed
            assert (await second.take("key:alice", clients[1])).allowed
            refused = await first.take("key:alice", clients[0])
            assert not refused.allowed and refused.retry_after == 1
            assert (await second.take("key:bob", clients[1])).allowed
            assert first.store == second.store == "redis"
        finally:
            for client in clients:
                await client.aclose()

    async def test_the_shared_bucket_refills_and_its_key_expires(self, redis_client: redis_asyncio.Redis) -> None:
        policy = RateLimitPolicy(per_minute=6000, burst=2)  # a token every 10 ms
        buckets = RedisTokenBuckets(policy, redis_client)
        assert [(await buckets.take("ip:10.0.0.9")).allowed for _ in range(3)] == [True, True, False]
        ttl_ms = await redis_client.pttl(REDIS_KEY_PREFIX + "ip:10.0.0.9")
        assert 0 < ttl_ms <= 20 + 1000  # until full again, plus a second
        await asyncio.sleep(0.03)
        again = await buckets.take("ip:10.0.0.9")
        assert again.allowed and again.limit == 2

    async def test_unreachable_redis_falls_back_to_memory_with_one_warning(
        self, redis_client: redis_asyncio.Redis, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        dead = redis_asyncio.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=0.5)
        limiter = RateLimiter(RateLimitPolicy(per_minute=60, burst=2), clock)
        try:
            with caplog.at_level(logging.INFO, logger="backend.limits"):
                decisions = [await limiter.take("ip:10.0.0.1", dead) for _ in range(3)]
                assert [d.allowed for d in decisions] == [True, True, False]  # limited all the same
                assert limiter.store == "memory"
                warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
                assert len(warnings) == 1 and "Redis is unavailable" in warnings[0].getMessage()
                # Redis is only tried again after a pause; then it is used (and shared) again.
                assert (await limiter.take("ip:10.0.0.2", redis_client)).allowed
                assert await redis_client.exists(REDIS_KEY_PREFIX + "ip:10.0.0.2") == 0
                clock.now += REDIS_RETRY_SECONDS
                assert (await limiter.take("ip:10.0.0.2", redis_client)).allowed
                assert await redis_client.exists(REDIS_KEY_PREFIX + "ip:10.0.0.2") == 1
                assert limiter.store == "redis"
                assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
        finally:
            await dead.aclose()


class TestStreamSlots:
    def test_a_caller_gets_at_most_its_cap_and_a_released_slot_is_reusable(self) -> None:
        slots = StreamSlots(per_identity=2)
        first, second = slots.acquire("ip:a"), slots.acquire("ip:a")
        assert first is not None and second is not None
        assert slots.acquire("ip:a") is None
        assert slots.acquire("ip:b") is not None  # another caller has its own slots
        first.release()
        first.release()  # idempotent: frees one slot, not two
        assert slots.open_streams("ip:a") == 1
        assert slots.acquire("ip:a") is not None
        assert slots.acquire("ip:a") is None
        assert slots.total == 3

    def test_zero_means_no_cap(self) -> None:
        slots = StreamSlots(per_identity=0)
        held = [slots.acquire("ip:a") for _ in range(100)]
        assert all(slot is not None for slot in held)
        for slot in held:
            slot.release()  # type: ignore[union-attr]
        assert slots.total == 0
