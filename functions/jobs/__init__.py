"""Built-in job types; importing this package registers them (`registry.load()` always does)."""

from functions.jobs import demo, http, llm, webhook

__all__ = ["demo", "http", "llm", "webhook"]
