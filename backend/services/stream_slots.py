"""How many live event streams (SSE and WebSocket) each caller holds open in this process.

A caller over its cap is refused a new stream until one of its streams ends. Counting is per
process: with ``API_WORKERS`` > 1 or several replicas a caller may hold the cap on each of them.
"""

from __future__ import annotations

from collections import Counter


class StreamSlot:
    """One open stream of ``identity``; ``release`` (idempotent) gives the slot back."""

    __slots__ = ("_slots", "identity")

    def __init__(self, slots: StreamSlots, identity: str) -> None:
        self._slots: StreamSlots | None = slots
        self.identity = identity

    def release(self) -> None:
        if self._slots is not None:
            self._slots._release(self.identity)
            self._slots = None


class StreamSlots:
    def __init__(self, per_identity: int) -> None:
        """``per_identity`` 0 means no cap."""
        self.per_identity = per_identity
        self._open: Counter[str] = Counter()

    def acquire(self, identity: str) -> StreamSlot | None:
        """A slot for a new stream of ``identity``, or None when it already holds its cap."""
        if self.per_identity and self._open[identity] >= self.per_identity:
            return None
        self._open[identity] += 1
        return StreamSlot(self, identity)

    def open_streams(self, identity: str) -> int:
        return self._open[identity]

    @property
    def total(self) -> int:
        return sum(self._open.values())

    def _release(self, identity: str) -> None:
        self._open[identity] -= 1
        if self._open[identity] <= 0:
            del self._open[identity]
