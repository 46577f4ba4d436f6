"""Outbound URL guard: private, loopback, link-local, metadata, multicast and reserved targets are refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from shared.settings import Settings, get_settings
from shared.urlguard import BlockedURLError, PublicHttpUrl, check_url


def settings(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://10.0.0.5/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://100.64.0.1/",
        "http://localhost:9/",
    ],
)
async def test_non_public_targets_are_refused_by_default(url: str) -> None:
    with pytest.raises(BlockedURLError) as caught:
        await check_url(url, settings())
    assert caught.value.field == "payload.url"


@pytest.mark.parametrize(
    "url", ["ftp://93.184.215.14/", "file:///etc/passwd", "http:///nohost", "http://1.2.3.4:99999/"]
)
async def test_malformed_or_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(BlockedURLError):
        await check_url(url, settings())


async def test_public_literal_address_passes() -> None:
    await check_url("https://93.184.215.14/hook", settings())


async def test_opt_in_allows_private_targets() -> None:
    await check_url("http://127.0.0.1:8000/", settings(allow_private_urls=True))
    await check_url("http://localhost:8000/", settings(allow_private_urls=True))


async def test_denylist_wins_even_with_private_urls_allowed() -> None:
    local = settings(allow_private_urls=True, url_denylist=["127.0.0.0/8", ".internal.example"])
    with pytest.raises(BlockedURLError, match="deny"):
        await check_url("http://127.0.0.1/", local)
    with pytest.raises(BlockedURLError, match="deny"):
        await check_url("http://93.184.215.14/", settings(url_denylist=["93.184.215.0/24"]))


async def test_allowlist_limits_targets() -> None:
    only = settings(url_allowlist=["93.184.215.0/24"])
    await check_url("http://93.184.215.14/", only)
    with pytest.raises(BlockedURLError, match="allow list"):
        await check_url("http://8.8.8.8/", only)


async def test_allowlist_does_not_open_private_addresses() -> None:
    with pytest.raises(BlockedURLError, match="non-public"):
        await check_url("http://127.0.0.1/", settings(url_allowlist=["127.0.0.0/8"]))


@pytest.fixture
def strict_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("strict_settings")
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/",
        "http://2130706433/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://localhost:8000/",
        "http://api.localhost./",
    ],
)
def test_private_literals_are_refused_at_validation(url: str) -> None:
    with pytest.raises(PydanticValidationError, match="not allowed"):
        TypeAdapter(PublicHttpUrl).validate_python(url)


@pytest.mark.usefixtures("strict_settings")
@pytest.mark.parametrize(
    "url", ["https://example.com/hook", "http://93.184.216.34/", "https://[2606:4700:4700::1111]/"]
)
def test_names_and_public_literals_pass_validation(url: str) -> None:
    # Names are judged when the job runs, after resolving them.
    assert str(TypeAdapter(PublicHttpUrl).validate_python(url)).startswith(url.rstrip("/"))


def test_private_literals_pass_with_the_local_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    try:
        assert TypeAdapter(PublicHttpUrl).validate_python("http://127.0.0.1:9/").host == "127.0.0.1"
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of the metadata endpoint
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "2001:0:a00:1:8000:63bf:3fff:fdd2",  # Teredo, server 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible
        "::a9fe:a9fe",
    ],
)
async def test_ipv4_embedded_in_ipv6_is_judged_by_the_ipv4(address: str) -> None:
    with pytest.raises(BlockedURLError):
        await check_url(f"http://[{address}]/", settings())
    with pytest.raises(PydanticValidationError):
        TypeAdapter(PublicHttpUrl).validate_python(f"http://[{address}]/")


@pytest.mark.parametrize(
    "address", ["2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8", "2606:4700::1111"]
)
async def test_ipv6_forms_of_public_ipv4_stay_allowed(address: str) -> None:
    assert await check_url(f"http://[{address}]/", settings())
