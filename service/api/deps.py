"""FastAPI dependencies shared by the routers: settings, stores and the caller's tenant.

Everything a route needs is built once in `service.app.create_app` and kept on `app.state`, so tests
and the CLI choose the configuration by passing `Settings`, never by patching globals. These do no
I/O, so they are `async def`: FastAPI runs them inline instead of hopping to its threadpool for each.
"""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from service.auth import LOCAL_TENANT, tenant_for_key
from service.datasets import DatasetStore, WeightsStore
from service.problems import ProblemError

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from LRRT_API_KEYS, sent as `Authorization: Bearer <key>`. "
    "Not needed when the server runs without keys (loopback only).",
)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_datasets(request: Request) -> DatasetStore:
    return request.app.state.datasets


async def get_weights(request: Request) -> WeightsStore:
    return request.app.state.weights


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


async def get_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The tenant owning the presented API key; 401 (with `WWW-Authenticate: Bearer`) without a valid one."""
    tenants_by_key: dict[str, str] = request.app.state.tenants_by_key
    if not tenants_by_key:
        return LOCAL_TENANT
    if credentials is None:
        raise ProblemError(
            401, "unauthorized", "This server requires an API key: send 'Authorization: Bearer <your key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="lrrt"'},
        )
    tenant = tenant_for_key(credentials.credentials, tenants_by_key)
    if tenant is None:
        raise ProblemError(
            401, "unauthorized", "The API key is not valid on this server: check LRRT_API_KEY against the keys "
            "its operator configured.",
            headers={"WWW-Authenticate": 'Bearer realm="lrrt", error="invalid_token"'},
        )
    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DatasetsDep = Annotated[DatasetStore, Depends(get_datasets)]
WeightsDep = Annotated[WeightsStore, Depends(get_weights)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
TenantDep = Annotated[str, Depends(get_tenant)]
