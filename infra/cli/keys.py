"""`jobq` subcommands: keys (to be filled in)."""

from __future__ import annotations

from infra.cli import app  # noqa: F401
