"""Fetch an image URL for /score without letting a caller reach inside our network (SSRF guard).

Light Bulb fetched any URL it was given. Here a URL is a security boundary:

- http and https only, on any port;
- the host name is resolved once, and every address it resolves to must be public: every range of
  IANA's IPv4 and IPv6 special-purpose address registries is refused (loopback, private, link-local
  with the cloud metadata address 169.254.169.254, shared 100.64/10, documentation, benchmarking,
  reserved, ...), and so are multicast and every IPv6 form that carries an IPv4 address inside it
  (IPv4-mapped and -compatible, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32): such an address
  can lead to any IPv4 host, 2002:a9fe:a9fe:: to 169.254.169.254;
- the connection goes to the address that was checked (never resolved again, so DNS rebinding cannot
  switch it), and the connected peer is checked once more; https still verifies the certificate
  against the host name;
- redirects are followed by hand, at most `max_redirects`, and every hop goes through the same checks;
- the body is capped (`max_bytes`, read in chunks, Content-Length checked first), and the whole fetch
  has one wall-clock deadline: when it passes, the sockets are shut down, which ends a read in the
  middle (a server that drips a byte a second never lets one read wait past its socket timeout).

`allow_networks` exists for tests (a local image server): it must be set explicitly in settings
(`LIGHTBULB_FETCH_ALLOW_NETWORKS`) and only those networks are let through.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urljoin, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# IANA special-purpose address registries (iana-ipv4-special-registry, iana-ipv6-special-registry, as of
# 2026), every entry, whatever its "globally reachable" column says: nothing a /score caller needs lives
# there. Multicast, the old IPv6 site-local range and IPv4-compatible IPv6 come on top.
SPECIAL_PURPOSE_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "240.0.0.0/4", "255.255.255.255/32", "224.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64",
    "2001::/23", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "::/96",
))


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo's server), if it has one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[0]
    return None


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
    if any(address in net for net in SPECIAL_PURPOSE_NETWORKS if net.version == address.version):
        return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_link_local)


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
        inner = embedded_ipv4(refused[0])  # a literal's one address is refused[0]
        if literal is not None:
            carried = f" (it carries {inner})" if inner is not None else ""
            raise FetchError(f"{host} is a non-public address{carried}: refused")
        carried = f", which carries {inner}" if inner is not None else ""
        raise FetchError(f"{host} resolves to a non-public address ({refused[0]}{carried}): refused")
    return scheme, host, port, str(addresses[0])


class _Deadline:
    """One wall-clock deadline for a whole fetch, redirects included. When it passes, every socket the
    fetch opened is shut down, which makes any connect, handshake or read in progress fail at once; the
    socket timeouts alone bound each recv, not their sum."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def expired(self) -> bool:
        return self._expired or time.monotonic() >= self.at

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0 or self._expired:
            raise FetchError("timed out")
        return left

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the same socket: shutting it down ends reads on the original (and on
        # the TLS socket that takes the original over), and it stays ours to close.
        with self._lock:
            if self._expired:
                raise FetchError("timed out")
            self._sockets.append(sock.dup())

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                with suppress(OSError):  # already closed by the peer: nothing left to interrupt
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._ip = ip
        self._deadline = deadline

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._ip, self.port), self._deadline.remaining())
        self._deadline.watch(sock)
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, deadline: _Deadline) -> None:
        # Kept under our own name: HTTPSConnection's `_context` is private (not in its type stubs).
        self._ssl_context = ssl.create_default_context()
        http.client.HTTPSConnection.__init__(self, host, port, timeout=deadline.remaining(),
                                             context=self._ssl_context)
        self._ip = ip
        self._deadline = deadline

    def connect(self) -> None:
        # The certificate is verified against the host name, while the socket goes to the checked ip.
        self.sock = self._ssl_context.wrap_socket(self._open(), server_hostname=self.host)


def fetch_url(url: str, *, limits: FetchLimits, resolver: Resolver = system_resolver) -> bytes:
    """The body of `url` (after at most `limits.max_redirects` checked redirects), or FetchError."""
    deadline = _Deadline(limits.timeout)
    try:
        return _fetch(url, limits=limits, resolver=resolver, deadline=deadline)
    finally:
        deadline.close()


def _fetch(url: str, *, limits: FetchLimits, resolver: Resolver, deadline: _Deadline) -> bytes:
    for _hop in range(limits.max_redirects + 1):
        scheme, host, port, ip = check_url(url, limits=limits, resolver=resolver)
        cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = cls(host, port, ip, deadline)
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
                deadline.remaining()
                chunk = response.read1(64 * 1024)  # what has arrived, not a wait for 64 KB
                if not chunk:
                    break
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchError(f"larger than {limits.max_bytes:,} bytes")
                chunks.append(chunk)
            if deadline.expired:
                raise FetchError("timed out")  # the shut-down socket looked like the end of the body
            return b"".join(chunks)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if deadline.expired or isinstance(exc, TimeoutError) or "timed out" in str(exc):
                raise FetchError("timed out") from None
            raise FetchError(f"cannot fetch: {exc}") from None
        finally:
            connection.close()
    raise FetchError(f"more than {limits.max_redirects} redirects")
