"""``GET /whoami``: the caller's API key name and role, for clients that show who is signed in
(the console) or check a key before using it."""

from __future__ import annotations

from fastapi import APIRouter

from backend.app.auth import PrincipalDep
from backend.schemas.identity import IdentityRead

router = APIRouter(tags=["service"])


@router.get(
    "/whoami",
    response_model=IdentityRead,
    summary="The caller's identity: the name of its API key and whether it is an admin key",
    description="With `API_KEYS` set, needs a key like every other operation (401 otherwise).",
)
async def whoami(principal: PrincipalDep) -> IdentityRead:
    if principal is None:
        return IdentityRead(access="open", name=None, admin=True)
    return IdentityRead(access="api_keys", name=principal.name, admin=principal.admin)
