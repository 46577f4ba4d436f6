"""/v1/tokens: an app's backend mints a short-lived, scoped browser token for its user (no Redis command)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Response
from pydantic import BaseModel, Field

from functions.api.deferred import api_router
from functions.api.deps import CurrentUser, ServicesDep
from functions.api.schemas import TokenCreated
from functions.api.tokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, SCOPES, Grant, Scope
from shared.errors import ForbiddenError
from shared.models import TAG_PATTERN

router = api_router(prefix="/v1/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    scopes: list[Scope] = Field(
        default=["read"],
        max_length=len(SCOPES),
        description="read (always: the owner's jobs and events), submit (and retry), cancel.",
    )
    tag: Annotated[str | None, Field(pattern=TAG_PATTERN)] = Field(
        default=None, description="Narrow the token to the jobs carrying this tag (e.g. session:<id>)."
    )
    ttl_seconds: int = Field(default=DEFAULT_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS)


@router.post("", status_code=201)
async def create_token(
    body: TokenCreate, user: CurrentUser, services: ServicesDep, response: Response
) -> TokenCreated:
    """A browser token for the caller's own jobs, valid for at most an hour. Minted by a backend with its
    API key (or JWT); a browser token cannot mint another."""
    if user.browser:
        raise ForbiddenError("a browser token cannot mint tokens: use the app's API key")
    grant = Grant(user.owner, user.credential, frozenset(body.scopes), body.tag, user.rate)
    token, expires = services.auth.tokens.mint(grant, body.ttl_seconds)
    response.headers["Cache-Control"] = "no-store"
    return TokenCreated(
        token=token,
        owner=user.owner,
        scopes=sorted({*body.scopes, "read"}),
        tag=body.tag,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )
