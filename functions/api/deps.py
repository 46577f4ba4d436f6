"""Dependency aliases that read well in route signatures: CurrentUser, AdminUser, EngineDep, ServicesDep."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from functions.api.auth import MAX_TOKEN_CHARS, Principal
from functions.api.services import Services
from functions.api.tokens import Scope, is_browser_token, require_scope
from shared.engine import Engine
from shared.errors import AuthError, ForbiddenError, JobNotFoundError
from shared.ids import is_job_id
from shared.models import NAME_PATTERN, Job

_bearer = HTTPBearer(auto_error=False, description="An API key, the admin token, or a JWT.")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_engine(services: ServicesDep) -> Engine:
    return services.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


async def current_user(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await _authenticate(request, services, credentials.credentials if credentials else None)


async def _authenticate(request: Request, services: Services, token: str | None) -> Principal:
    user = await services.auth.authenticate(token)
    request.state.owner = user.owner  # for the access log (functions/api/middleware.py)
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]

AccessToken = Annotated[
    str | None,
    Query(
        max_length=MAX_TOKEN_CHARS,
        description="A browser token (POST /v1/tokens), for EventSource, which cannot send a header. "
        "Accepted on the event routes only; never logged.",
    ),
]


async def stream_user(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: AccessToken = None,
) -> Principal:
    """The event routes' caller: the Authorization header, else `?access_token=` holding a browser token
    (short-lived and scoped; a long-lived key or the admin token in a URL is refused, never accepted)."""
    if credentials is not None:
        return await _authenticate(request, services, credentials.credentials)
    if access_token is not None and not is_browser_token(access_token):
        raise AuthError("?access_token= takes a browser token from POST /v1/tokens only")
    return await _authenticate(request, services, access_token)


StreamUser = Annotated[Principal, Depends(stream_user)]


def require(user: Principal, scope: Scope) -> None:
    """ForbiddenError when a browser token without `scope` asks for it (other credentials may do anything
    their owner may)."""
    require_scope(user.scopes, scope)


def sees(user: Principal, job: Job) -> bool:
    """A tag-narrowed browser token sees only its tag's jobs (the owner check is the engine's)."""
    return user.tag is None or user.tag in job.tags


async def visible_job(user: Principal, engine: Engine, job_id: str) -> str:
    """`job_id` when the caller may act on it; a tag-narrowed token's caller pays one read to check the
    job's tags first (the same 404 as a missing job otherwise)."""
    job_id = job_id_or_404(job_id)
    if user.tag is not None and not sees(user, await engine.get(job_id, owner=owner_scope(user))):
        raise JobNotFoundError("job not found")
    return job_id


async def admin_user(user: CurrentUser) -> Principal:
    if not user.admin:
        raise ForbiddenError("admin credentials required")
    return user


AdminUser = Annotated[Principal, Depends(admin_user)]


def job_id_or_404(job_id: str) -> str:
    """A hostile or malformed id names no job: the same 404 as a missing one."""
    if not is_job_id(job_id):  # no Redis command for garbage
        raise JobNotFoundError("job not found")
    return job_id


QueueName = Annotated[str, Path(pattern=NAME_PATTERN, description="A queue name.")]


def owner_scope(user: Principal) -> str | None:
    """Users act on their own jobs only; admins on any job (the dashboard and operators need that)."""
    return None if user.admin else user.owner
