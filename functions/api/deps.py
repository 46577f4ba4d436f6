"""Dependency aliases that read well in route signatures: CurrentUser, AdminUser, EngineDep, ServicesDep."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from functions.api.auth import Principal
from functions.api.services import Services
from shared.engine import Engine
from shared.errors import ForbiddenError, JobNotFoundError
from shared.ids import is_job_id
from shared.models import NAME_PATTERN

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
    user = await services.auth.authenticate(credentials.credentials if credentials else None)
    request.state.owner = user.owner  # for the access log (functions/api/middleware.py)
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]


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
