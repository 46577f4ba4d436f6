"""Test fixtures live in tests/support; each module there is a pytest plugin owned by one area."""

pytest_plugins = [
    "tests.support.gateway_fixtures",
    "tests.support.engine_fixtures",
    "tests.support.api_fixtures",
    "tests.support.consumer_fixtures",
    "tests.support.qstash_server",
    "tests.support.fake_llm",
    "tests.support.ai_stack",
]
