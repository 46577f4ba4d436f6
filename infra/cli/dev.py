"""`jobq dev`: the local stack (gateway in its own process, API, consumer, scheduler). Ctrl-C stops it."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Annotated

import typer

from infra.cli import app
from infra.local.stack import StackConfig, StackError, run_stack
from shared.logs import configure_logging
from shared.runner import run as run_loop
from shared.settings import get_settings


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="JOBQ_DEV_REDIS_URL", help="A real Redis behind the gateway; embedded if unset."),
    ] = None,
    gateway_port: Annotated[int, typer.Option(help="REST gateway port.")] = 8079,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    tick: Annotated[
        float, typer.Option(min=0.1, help="Longest sleep between polls of the due-index (the cron's part).")
    ] = 5.0,
) -> None:
    """Run gateway, API, consumer (local push trigger) and scheduler; print URLs and the admin token."""
    os.environ.setdefault("JOBQ_LOG_FORMAT", "console")  # readable lines; every part reads it
    get_settings.cache_clear()
    configure_logging(get_settings())
    config = StackConfig(host=host, port=port, gateway_port=gateway_port, redis_url=redis_url, tick=tick)
    token = os.environ.get("JOBQ_ADMIN_TOKEN")
    generated = not token
    if token:
        config.admin_token = token
    try:
        run_loop(_run(config, generated))
    except StackError as exc:
        typer.echo(f"jobq dev: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("jobq dev stopped", err=True)


async def _run(config: StackConfig, generated: bool) -> None:
    os.environ.update(config.environment())  # every part (jobs included) reads get_settings()
    get_settings.cache_clear()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(cfg: StackConfig) -> None:
        backend = cfg.redis_url or "embedded backend"
        typer.echo(f"jobq dev ready\n  API:     {cfg.api_url}  (docs: {cfg.api_url}/docs)")
        typer.echo(f"  gateway: {cfg.gateway_url} -> {backend}")
        typer.echo(f"  dashboard: {cfg.api_url}/dashboard")
        if generated:  # a throwaway token the developer needs; one they set themselves is never echoed
            typer.echo(f"  admin token (generated for this run): {cfg.admin_token}")
            typer.echo(f"  try: export JOBQ_API_KEY={cfg.admin_token}")
        else:
            typer.echo("  admin token: the one in JOBQ_ADMIN_TOKEN")
        typer.echo("Press Ctrl-C to stop.")

    await run_stack(config, get_settings(), stop, on_ready=ready)
