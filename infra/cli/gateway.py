"""`jobq gateway`: the Upstash-compatible REST gateway on Redis, a Redis Cluster or the embedded stand-in."""

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
    redis_cluster: Annotated[
        str | None,
        typer.Option(
            envvar="JOBQ_GATEWAY_REDIS_CLUSTER",
            help="A Redis Cluster node to start from (redis://host:port); commands are routed by key slot.",
        ),
    ] = None,
    strict_locking: Annotated[
        bool,
        typer.Option(
            envvar="JOBQ_GATEWAY_STRICT_LOCKING",
            help="Refuse scripts without `#!lua flags=allow-key-locking` (they take Upstash's global lock).",
        ),
    ] = False,
    replica_lag_ms: Annotated[
        int,
        typer.Option(
            envvar="JOBQ_GATEWAY_REPLICA_LAG_MS",
            help="Plain reads miss writes younger than this unless they send the write's sync token "
            "(a lagging read replica); 0 is off.",
        ),
    ] = 0,
) -> None:
    """Serve the Upstash REST protocol (POST /, /pipeline, /multi-exec) in front of Redis."""
    import uvicorn

    from infra.local.rest_gateway import KEEP_ALIVE_SECONDS, create_app

    if not token:
        raise typer.BadParameter("must not be empty", param_hint="--token")
    if redis_url and redis_cluster:
        message = "give --redis-url or --redis-cluster, not both"
        raise typer.BadParameter(message, param_hint="--redis-cluster")
    if replica_lag_ms < 0:
        raise typer.BadParameter("must be 0 (off) or more", param_hint="--replica-lag-ms")
    backend = redis_url or (f"Redis Cluster {redis_cluster}" if redis_cluster else "embedded fakeredis")
    locking = " (strict locking)" if strict_locking else ""
    lag = f" (replica lag {replica_lag_ms} ms)" if replica_lag_ms else ""
    typer.echo(f"jobq gateway on http://{host}:{port} -> {backend}{locking}{lag}", err=True)
    app = create_app(
        token,
        redis_url,
        cluster_url=redis_cluster,
        strict_locking=strict_locking,
        replica_lag_ms=replica_lag_ms,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
