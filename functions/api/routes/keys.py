"""/v1/keys (admin): create, list and revoke API keys. A key's secret is shown once, at creation."""

from __future__ import annotations

from fastapi import Response

from functions.api.deferred import api_router
from functions.api.deps import AdminUser, ServicesDep
from functions.api.schemas import KeyCreate, KeyCreated, KeyList, KeyPublic
from shared.apikeys import ApiKey
from shared.errors import JobqError

router = api_router(prefix="/v1/keys", tags=["keys"])


class KeyNotFoundError(JobqError):
    code = "not_found"
    status_code = 404


def _public(record: ApiKey) -> KeyPublic:
    return KeyPublic.model_validate(record.model_dump(exclude={"hash"}))


@router.post("", status_code=201)
async def create_key(body: KeyCreate, _: AdminUser, services: ServicesDep, response: Response) -> KeyCreated:
    """Create a key; the secret is in this response only (never stored, never cached by proxies)."""
    record, secret = await services.keys.create(body.owner, admin=body.admin, rate=body.rate)
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(**_public(record).model_dump(), key=secret)


@router.get("")
async def list_keys(_: AdminUser, services: ServicesDep) -> KeyList:
    return KeyList(keys=[_public(record) for record in await services.keys.list()])


@router.delete("/{key_id}")
async def revoke_key(key_id: str, _: AdminUser, services: ServicesDep) -> KeyPublic:
    """Revoke a key: at once on this instance, within `key_cache_seconds` on other warm instances."""
    record = await services.keys.revoke(key_id)
    if record is None:
        raise KeyNotFoundError("no such key")
    services.auth.forget(key_id)
    return _public(record)
