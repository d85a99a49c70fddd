"""Who is calling and what they may see: the ``API_KEYS`` format, the key ring that identifies a
caller in constant time, and the ownership rules services apply.

No HTTP here: ``backend.app.auth`` reads the credentials off a request and hands services a
``Principal`` (``None`` when the service runs open, without ``API_KEYS``).

Ownership rule: a non-admin key sees and acts only on what it created (``owner`` = its name);
admin keys and open mode see everything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ADMIN_FLAG = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the name of its API key and whether that key is an admin key."""

    name: str
    admin: bool


@dataclass(frozen=True)
class ApiKey:
    """One configured key. Only its SHA-256 digest is kept, never the key itself."""

    name: str
    digest: bytes = field(repr=False)
    admin: bool = False


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_api_keys(text: str) -> list[ApiKey]:
    """Parse comma-separated ``name:key[:admin]`` entries.

    Raises ``ValueError`` naming the entry (by position and name) and the problem; a message never
    contains a key.
    """
    keys: list[ApiKey] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    entries = [entry.strip() for entry in text.split(",")]
    for position, entry in enumerate((entry for entry in entries if entry), start=1):
        if ":" not in entry:  # perhaps a bare key: never echo it
            raise ValueError(f"entry {position} is not name:key[:admin]")
        name, _, rest = entry.partition(":")
        key, _, flag = rest.partition(":")
        name, key, flag = name.strip(), key.strip(), flag.strip()
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"entry {position}: the name must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-' "
                "(entries are name:key[:admin])"
            )
        label = f"entry {position} ({name})"
        if not key:
            raise ValueError(f"{label} has no key (entries are name:key[:admin])")
        if flag not in ("", ADMIN_FLAG):
            raise ValueError(f"{label}: the part after the key may only be '{ADMIN_FLAG}'")
        if name in names:
            raise ValueError(f"{label}: the name is used twice")
        digest = _digest(key)
        if digest in digests:
            raise ValueError(f"{label}: its key is the same as another entry's")
        names.add(name)
        digests.add(digest)
        keys.append(ApiKey(name, digest, flag == ADMIN_FLAG))
    return keys


class KeyRing:
    """The configured keys; identifies the caller presenting a key."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys = tuple(keys)

    @property
    def enabled(self) -> bool:
        """False when no key is configured: the service runs open."""
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def admin_count(self) -> int:
        return sum(key.admin for key in self._keys)

    def identify(self, presented: str) -> Principal | None:
        """The principal whose key is ``presented``, or None.

        Every configured key is compared, with ``hmac.compare_digest`` on fixed-length digests,
        so the time taken says nothing about which key (or how much of one) matched.
        """
        digest = _digest(presented)
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key
        return None if found is None else Principal(found.name, found.admin)


def owner_filter(principal: Principal | None) -> str | None:
    """The owner whose resources the caller is limited to; None means everything."""
    if principal is None or principal.admin:
        return None
    return principal.name


def can_see(principal: Principal | None, owner: str | None) -> bool:
    restricted_to = owner_filter(principal)
    return restricted_to is None or owner == restricted_to


def owner_of_new(principal: Principal | None) -> str | None:
    """The ``owner`` recorded on what the caller creates (None in open mode)."""
    return None if principal is None else principal.name


def idempotency_scope(scope: str, principal: Principal | None) -> str:
    """Idempotency keys are per caller: another key reusing the same ``Idempotency-Key`` must not
    receive the first caller's stored response."""
    return scope if principal is None else f"{scope} as {principal.name}"
