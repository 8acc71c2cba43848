"""Fetch an image URL for /score without letting a caller reach inside our network (SSRF guard).

Light Bulb fetched any URL it was given. Here a URL is a security boundary:

- http and https only, on any port;
- the host name is resolved once, and every address it resolves to must be public: loopback,
  private, link-local (which includes the cloud metadata address 169.254.169.254), multicast,
  reserved, unspecified, shared (100.64/10) and IPv4-mapped forms of these are refused;
- the connection goes to the address that was checked (never resolved again, so DNS rebinding cannot
  switch it), and the connected peer is checked once more; https still verifies the certificate
  against the host name;
- redirects are followed by hand, at most `max_redirects`, and every hop goes through the same checks;
- the body is capped (`max_bytes`, read in chunks, Content-Length checked first), and the whole fetch
  has one deadline.

`allow_networks` exists for tests (a local image server): it must be set explicitly in settings
(`LIGHTBULB_FETCH_ALLOW_NETWORKS`) and only those networks are let through.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urljoin, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


class FetchError(Exception):
    """A URL that was refused or could not be fetched; the message is fit to return to the caller."""


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 10 * 1024 * 1024
    timeout: float = 10.0  # seconds for the whole fetch, redirects included
    max_redirects: int = 3
    allow_networks: Sequence[str] = field(default_factory=tuple)  # tests only (see module docstring)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    # The address is (host, port, ...) with host a string; the stubs also allow the (int, bytes) form
    # of an IPv6 address on a Python built with --disable-ipv6, which this server does not run on.
    return list(dict.fromkeys(cast(str, info[4][0]) for info in infos))


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES or (
        isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE
    ):
        return False
    return not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified or not address.is_global
    )


def _allowed(address: Address, limits: FetchLimits) -> bool:
    if is_public(address):
        return True
    return any(address in ipaddress.ip_network(net, strict=False) for net in limits.allow_networks)


def check_url(url: str, *, limits: FetchLimits, resolver: Resolver = system_resolver) -> tuple[str, str, int, str]:
    """(scheme, host, port, checked ip) for a URL we may fetch, or FetchError saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {scheme or 'this'}")
    host = parts.hostname
    if not host:
        raise FetchError("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
        candidates = [str(literal)]
    except ValueError:
        literal = None
        candidates = resolver(host, port)
    if not candidates:
        raise FetchError(f"{host} does not resolve to any address")
    addresses = [ipaddress.ip_address(a.split("%")[0]) for a in candidates]
    refused = [a for a in addresses if not _allowed(a, limits)]
    if refused:
        # All of a name's addresses must be public: a name that also points inside is refused outright.
        if literal is not None:
            raise FetchError(f"{host} is a non-public address: refused")
        raise FetchError(f"{host} resolves to a non-public address ({refused[0]}): refused")
    return scheme, host, port, str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        # Kept under our own name: HTTPSConnection's `_context` is private (not in its type stubs).
        self._ssl_context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._ssl_context)
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        # The certificate is verified against the host name, while the socket goes to the checked ip.
        self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)


def fetch_url(url: str, *, limits: FetchLimits, resolver: Resolver = system_resolver) -> bytes:
    """The body of `url` (after at most `limits.max_redirects` checked redirects), or FetchError."""
    deadline = time.monotonic() + limits.timeout
    for _hop in range(limits.max_redirects + 1):
        scheme, host, port, ip = check_url(url, limits=limits, resolver=resolver)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timed out")
        cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = cls(host, port, ip, remaining)
        try:
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path, headers={"User-Agent": "LightBulb-score/1", "Accept": "image/*"})
            peer = ipaddress.ip_address(connection.sock.getpeername()[0].split("%")[0])
            if not _allowed(peer, limits):
                raise FetchError(f"connected to a non-public address ({peer}): refused")
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"HTTP {response.status} without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise FetchError(f"larger than {limits.max_bytes:,} bytes")
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError("timed out")
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchError(f"larger than {limits.max_bytes:,} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError) or "timed out" in str(exc):
                raise FetchError("timed out") from None
            raise FetchError(f"cannot fetch: {exc}") from None
        finally:
            connection.close()
    raise FetchError(f"more than {limits.max_redirects} redirects")
