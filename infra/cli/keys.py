"""`jobq keys create|list|revoke`: manage API keys through the API, with an admin credential."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from infra.cli import app
from infra.cli.options import Yes, api_options, confirm
from infra.cli.output import err, handled, keys_table, out, plain, print_json

keys_app = typer.Typer(help="Create, list and revoke API keys (admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    owner: Annotated[str, typer.Option(help="Who the key belongs to; they own the jobs it submits.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin key (queues, keys, anyone's jobs).")
    ] = False,
    rate: Annotated[
        str | None, typer.Option(help="Submit rate limit, e.g. 100/min or 10/s (default: the API's).")
    ] = None,
) -> None:
    """Create a key and print its secret: it is shown this once and never stored by jobq."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        created = plain(api.create_key(owner, admin=admin, rate=rate))
    if options.as_json:
        print_json(created)
        return
    kind = "admin key" if created["admin"] else "key"
    out().print(Text.assemble(f"created {kind} ", (created["id"], "bold"), f" for {created['owner']}"))
    # The secret alone on stdout, so `jobq keys create ... | tail -1` captures it; the advice on stderr.
    typer.echo(created["key"])
    err().print("store it now: it is not shown again", style="yellow")


@keys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """List keys (ids, owners, rates; never secrets), revoked ones included."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        body = {"keys": plain(api.list_keys())}
    if options.as_json:
        print_json(body)
    elif not body["keys"]:
        out().print("no keys")
    else:
        out().print(keys_table(body["keys"]))


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from `jobq keys list`).")],
    yes: Yes = False,
) -> None:
    """Revoke a key (asks first unless --yes); other warm API instances notice within 30 s."""
    with handled():
        confirm(f"Revoke key {key_id}? Clients using it will get 401.", yes)
        options = api_options(ctx)
        with options.connect() as api:
            revoked = plain(api.revoke_key(key_id))
    if options.as_json:
        print_json(revoked)
    else:
        out().print(Text.assemble("revoked key ", (revoked["id"], "bold"), f" of {revoked['owner']}"))
