"""`jobq worker`: run jobs continuously on a server (any timeout), waking when work is due; graceful stop.

The consumer and asyncio are imported inside the command, so other commands do not load them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from infra.cli import app, import_from_working_directory

if TYPE_CHECKING:
    from shared.consumer import ConsumerConfig
    from shared.consumer.worker import WorkerStats


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@app.command()
def worker(
    queues: Annotated[
        list[str] | None, typer.Option("--queues", "-q", help="Queues to serve (repeat or comma-separate).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Handlers running at once, all types.")] = 10,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Most jobs one claim takes.")] = 100,
    idle_max: Annotated[float, typer.Option(min=0.1, help="Longest sleep between idle polls (s).")] = 30.0,
    grace: Annotated[float, typer.Option(min=0, help="On stop, grace for running jobs (s).")] = 10.0,
) -> None:
    """Run jobs continuously. Ctrl-C (or SIGTERM) hands unstarted jobs back and lets running ones finish."""

    from shared.consumer import ConsumerConfig
    from shared.logs import configure_logging
    from shared.runner import run as run_loop
    from shared.settings import get_settings

    import_from_working_directory()  # JOBQ_JOB_MODULES may name modules right here
    configure_logging(get_settings())  # JSON unless JOBQ_LOG_FORMAT=console
    config = ConsumerConfig(batch_size=batch, concurrency=concurrency, queues=_split(queues), grace=grace)
    stats = run_loop(_run(config, idle_max))
    typer.echo(f"worker stopped: {asdict(stats)}")


async def _run(config: ConsumerConfig, idle_max: float) -> WorkerStats:
    import asyncio
    import signal

    from functions.consumer.runtime import build_runtime
    from shared.consumer.worker import Worker

    runtime = build_runtime(config=config)
    runner = Worker(runtime.consumer, idle_min=min(0.5, idle_max), idle_max=idle_max)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            typer.echo("stopping: handing back unstarted jobs, waiting for running ones (again to force)")
            runner.stop()
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await runner.run()
    finally:
        await runtime.redis.close()
