"""`jobq dev`: the whole local stack (the gateway in a process of its own; API, consumer, scheduler).
Ctrl-C stops it.

Data survives a restart: the admin token and, when `redis-server` is installed, Redis's data are kept in
`.jobq/` under the working directory (infra/cli/devdata.py). The stack and asyncio are imported inside the
command, so other commands do not load them.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from infra.cli import app, import_from_working_directory

if TYPE_CHECKING:
    from infra.local.stack import StackConfig
    from shared.settings import Settings


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="JOBQ_DEV_REDIS_URL", help="A Redis of yours behind the gateway (nothing in .jobq/)."
        ),
    ] = None,
    redis_cluster: Annotated[
        str | None,
        typer.Option(
            envvar="JOBQ_DEV_REDIS_CLUSTER",
            help="A Redis Cluster of yours behind the gateway, any node's URL (nothing in .jobq/).",
        ),
    ] = None,
    in_memory: Annotated[
        bool, typer.Option("--in-memory", help="The embedded backend: jobs are gone when the stack stops.")
    ] = False,
    gateway_port: Annotated[int, typer.Option(help="REST gateway port.")] = 8079,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    tick: Annotated[
        float, typer.Option(min=0.1, help="Longest sleep between polls of the due-index (the cron's part).")
    ] = 5.0,
    access_log: Annotated[
        bool,
        typer.Option("--access-log", envvar="JOBQ_ACCESS_LOG", help="Log every request, not only 5xx."),
    ] = False,
) -> None:
    """Run gateway, API, consumer (local push trigger) and scheduler; print URLs and the admin token."""

    from infra.cli.devdata import DevDataError, RedisServer, admin_token, data_dir, redis_server_binary
    from infra.local.stack import StackConfig, StackError
    from shared.logs import configure_logging
    from shared.runner import run as run_loop
    from shared.settings import get_settings

    import_from_working_directory()  # JOBQ_JOB_MODULES='["myapp.jobs"]' with myapp/ right here
    os.environ.setdefault("JOBQ_LOG_FORMAT", "console")  # readable lines; every part reads it
    os.environ["JOBQ_ACCESS_LOG"] = "true" if access_log else "false"  # off by default here only
    get_settings.cache_clear()
    configure_logging(get_settings())
    _load_job_types(get_settings())
    config = StackConfig(
        host=host,
        port=port,
        gateway_port=gateway_port,
        redis_url=redis_url,
        cluster_url=redis_cluster,
        tick=tick,
    )
    own_token = os.environ.get("JOBQ_ADMIN_TOKEN")
    binary = None if (redis_url or redis_cluster or in_memory) else redis_server_binary()
    try:
        with ExitStack() as cleanup:
            config.admin_token = own_token or admin_token(data_dir())
            if binary is not None:
                config.redis_url = cleanup.enter_context(RedisServer(binary, data_dir() / "redis")).url
            store = _store(redis_cluster or redis_url, binary, in_memory)
            run_loop(_run(config, store, token_shown=not own_token))
    except (StackError, DevDataError) as exc:
        typer.echo(f"jobq dev: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("jobq dev stopped", err=True)


def _load_job_types(settings: Settings) -> None:
    """Load JOBQ_JOB_MODULES before anything starts, so a module that does not import is one line."""
    from shared.registry import registry

    try:
        registry.load(settings.job_modules)
    except ImportError as exc:
        modules = ", ".join(settings.job_modules)
        typer.echo(f"jobq dev: JOBQ_JOB_MODULES ({modules}): {exc} (looked in {os.getcwd()})", err=True)
        raise typer.Exit(1) from None


def _store(redis_url: str | None, binary: str | None, in_memory: bool) -> str:
    """Where the jobs are, for the banner."""
    if redis_url:
        return redis_url
    if binary:
        return "redis-server, data kept in .jobq/redis"
    reason = "--in-memory" if in_memory else "install redis-server to keep them"
    return f"embedded backend, in memory: jobs are gone when it stops ({reason})"


async def _run(config: StackConfig, store: str, *, token_shown: bool) -> None:
    import asyncio
    import signal

    from infra.local.stack import run_stack
    from shared.settings import get_settings

    os.environ.update(config.environment())  # every part (jobs included) reads get_settings()
    get_settings.cache_clear()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(cfg: StackConfig) -> None:
        typer.echo(f"jobq dev ready\n  API:     {cfg.api_url}  (docs: {cfg.api_url}/docs)")
        typer.echo(f"  gateway: {cfg.gateway_url} -> {store}")
        typer.echo(f"  dashboard: {cfg.api_url}/dashboard")
        if token_shown:  # one the developer set themselves is never echoed
            typer.echo(f"  admin token (kept in .jobq/admin-token): {cfg.admin_token}")
            typer.echo(f"  try: export JOBQ_API_KEY={cfg.admin_token}")
        else:
            typer.echo("  admin token: the one in JOBQ_ADMIN_TOKEN")
        typer.echo("Press Ctrl-C to stop.")

    await run_stack(config, get_settings(), stop, on_ready=ready)
