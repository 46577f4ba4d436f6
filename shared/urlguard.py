"""Outbound URL guard: a job must not be able to turn jobq against its own host network (SSRF).

By default every address a host name resolves to must be public: private, loopback, link-local (the cloud
metadata endpoint 169.254.169.254 among them), multicast, reserved and unspecified addresses are refused.
`allow_private_urls` lifts that for local development. `url_denylist` / `url_allowlist` entries are host
names (a leading dot matches subdomains: ".example.com") or networks in CIDR form ("203.0.113.0/24").
Callers re-check every redirect target (the built-in jobs follow redirects by hand for that reason).

`PublicHttpUrl` refuses at submit what needs no DNS to judge (a literal private address, `localhost`), so
the user gets a 422 at once; names are resolved and checked again when the job runs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, HttpUrl

from shared.errors import PermanentJobError
from shared.settings import Settings, get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = frozenset({"http", "https"})


class BlockedURLError(PermanentJobError):
    code = "url_blocked"


# IPv6 forms that carry an IPv4 address a gateway or the host's stack may deliver to: NAT64 (RFC 6052 and
# the local-use prefix of RFC 8215) and the deprecated IPv4-compatible form (::a.b.c.d).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or IPv4-compatible address stands for (it is that address)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # :: and ::1 stand for themselves
    return None


def _tunnelled_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 endpoints a 6to4 or Teredo address tunnels to (Teredo: its server and its client)."""
    found = [address.sixtofour] if address.sixtofour is not None else []
    return found + list(address.teredo or ())


def is_public(address: IPAddress) -> bool:
    """False for any address that reaches the host, its network or its cloud provider's services,
    including through an IPv4 address embedded in an IPv6 one."""
    if isinstance(address, ipaddress.IPv6Address):
        translated = _translated_ipv4(address)
        if translated is not None:
            return is_public(translated)
        if not all(is_public(inner) for inner in _tunnelled_ipv4(address)):
            return False
    return (
        not (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
        )
        and address.is_global
    )


def _host_matches(host: str, entry: str) -> bool:
    entry = entry.lower()
    if entry.startswith("."):
        return host.endswith(entry) or host == entry[1:]
    return host == entry


def _matches(host: str, addresses: Iterable[IPAddress], entries: Iterable[str]) -> bool:
    addresses = list(addresses)
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if _host_matches(host, entry):
                return True
            continue
        if any(address in network for address in addresses if address.version == network.version):
            return True
    return False


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host name resolves to (a literal address resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BlockedURLError(f"cannot resolve host {host!r}", field="payload.url") from exc
    # Strip an IPv6 zone id ("fe80::1%eth0") before parsing.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_url(url: str, settings: Settings) -> list[IPAddress]:
    """Raise BlockedURLError unless `url` may be fetched; return the checked addresses of its host.

    Callers connect to one of these addresses (not the name again), so a DNS answer that changes between
    the check and the connection (DNS rebinding) cannot reach a private address.
    """
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        raise BlockedURLError("only http and https URLs are allowed", field="payload.url")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise BlockedURLError("the URL has no host", field="payload.url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedURLError("the URL has an invalid port", field="payload.url") from exc
    addresses = await resolve(host, port)
    if _matches(host, addresses, settings.url_denylist):
        raise BlockedURLError(f"host {host!r} is on the deny list", field="payload.url")
    if settings.url_allowlist and not _matches(host, addresses, settings.url_allowlist):
        raise BlockedURLError(f"host {host!r} is not on the allow list", field="payload.url")
    if settings.allow_private_urls:
        return addresses
    for address in addresses:
        if not is_public(address):
            raise BlockedURLError(f"host {host!r} resolves to a non-public address", field="payload.url")
    return addresses


def refuse_private_literal(url: HttpUrl) -> HttpUrl:
    """Submit-time check of a URL's host when it is a literal address or a localhost name."""
    if get_settings().allow_private_urls:
        return url
    host = (url.host or "").strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        raise ValueError("localhost URLs are not allowed")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url
    if not is_public(address):
        raise ValueError("URLs to private, loopback or link-local addresses are not allowed")
    return url


PublicHttpUrl = Annotated[HttpUrl, AfterValidator(refuse_private_literal)]
