"""Where webhooks may go: ``http``/``https`` URLs of public addresses.

A webhook makes the service send requests to a URL a client chose, so without care it could
reach the service's own network (metadata endpoints, databases, admin panels): request
forgery. Every address the host resolves to must be public (not loopback, private, link-local,
shared, reserved or multicast), checked at registration and again before every delivery; the
delivery then connects to the address that was checked, so a DNS answer that changes in
between (DNS rebinding) cannot redirect it. Programs that deliver inside their own network
(and the tests) turn this off with the ``webhooks_allow_private_hosts`` setting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeDestinationError(Exception):
    """The URL may not be called: wrong form, unresolvable, or not a public address."""


@dataclass(frozen=True, slots=True)
class Target:
    """What to connect to: the URL (its host replaced by a checked address when pinned), and
    the Host header and TLS server name that keep the original host name."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Host": self.host_header} if self.host_header else {}

    @property
    def extensions(self) -> dict[str, str]:
        return {"sni_hostname": self.sni_hostname} if self.sni_hostname else {}


def parse(url: str) -> httpx.URL:
    """The URL if its form is acceptable for a webhook; UnsafeDestinationError otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeDestinationError(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeDestinationError("The URL contains spaces or control characters.")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeDestinationError("The URL is not valid.") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeDestinationError("Only http and https URLs can receive webhooks.")
    if not parsed.host:
        raise UnsafeDestinationError("The URL has no host.")
    if parsed.userinfo:
        raise UnsafeDestinationError(
            "Credentials in the URL are not accepted; verify Patron-Signature instead."
        )
    if parsed.fragment:
        raise UnsafeDestinationError("The URL may not have a #fragment.")
    return parsed


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 addresses carried inside IPv6 ones are judged as the IPv4 address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself, in any of the
    spellings the system resolver accepts, such as ``2130706433`` for 127.0.0.1)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UnsafeDestinationError(f"The host {host!r} does not resolve.") from exc
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # Drop an IPv6 scope ("fe80::1%eth0"); link-local addresses are refused anyway.
        addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    if not addresses:
        raise UnsafeDestinationError(f"The host {host!r} does not resolve.")
    return addresses


async def target_for(url: str, allow_private: bool) -> Target:
    """Check ``url`` and say how to reach it. With private hosts allowed, the URL is used as
    is; otherwise every address must be public and the first one is pinned."""
    parsed = parse(url)
    if allow_private:
        return Target(url=str(parsed))
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS want it
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await resolve(host, port)
    refused = [str(a) for a in addresses if not is_public(a)]
    if refused:
        raise UnsafeDestinationError(
            f"The host {host!r} resolves to a non-public address ({refused[0]}); "
            "webhooks go to public addresses only unless the program setting "
            "webhooks_allow_private_hosts is on."
        )
    pinned = parsed.copy_with(host=str(addresses[0]))
    return Target(
        url=str(pinned),
        host_header=parsed.netloc.decode("ascii"),
        sni_hostname=host if parsed.scheme == "https" else None,
    )
