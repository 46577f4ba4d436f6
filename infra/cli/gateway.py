"""`jobq gateway`: the Upstash-compatible REST gateway on a Redis server or the embedded stand-in."""

from __future__ import annotations

from typing import Annotated

import typer

from infra.cli import app


@app.command()
def gateway(
    token: Annotated[str, typer.Option(envvar="JOBQ_GATEWAY_TOKEN", help="Bearer token clients must send.")],
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8079,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="JOBQ_GATEWAY_REDIS_URL", help="Redis to forward to; embedded if unset."),
    ] = None,
) -> None:
    """Serve the Upstash REST protocol (POST /, /pipeline, /multi-exec) in front of Redis."""
    import uvicorn

    from infra.local.gateway import KEEP_ALIVE_SECONDS, create_app

    if not token:
        raise typer.BadParameter("must not be empty", param_hint="--token")
    backend = redis_url or "embedded fakeredis"
    typer.echo(f"jobq gateway on http://{host}:{port} -> {backend}", err=True)
    uvicorn.run(
        create_app(token, redis_url),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
