"""The inference worker's private wire protocol: framing, the shared key, addresses, its errors.

A frame is `LBI1`, the header length and the payload length (network order), a JSON header, then the
payload (inputs as raw bytes, sizes in the header). Every request carries a key derived from the
site's SECRET_KEY, so only processes holding it can score. Nothing here imports Django, numpy or torch.
"""

from __future__ import annotations

import hmac
import json
import socket
import struct
from collections.abc import Sequence
from hashlib import sha256

MAGIC = b"LBI1"
PREFIX = struct.Struct("!4sII")  # magic, header bytes, payload bytes
MAX_HEADER = 4 * 1024 * 1024
DEFAULT_MAX_PAYLOAD = 512 * 1024 * 1024


class InferenceUnavailable(Exception):
    """The worker is not running, not reachable, or did not answer in time."""


class InferenceFailed(Exception):
    """The worker answered with an error for the whole request (unknown head, wrong key, ...)."""


def derive_key(secret: str) -> bytes:
    """The key both sides derive from SECRET_KEY (never the secret itself on the wire)."""
    return hmac.new(secret.encode("utf-8"), b"lightbulb-inference-worker/1", sha256).digest()


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' (IPv6 as '[::1]:8765')."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"inference address must be host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


# --------------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------------


def write_frame(sock: socket.socket, header: dict, blobs: Sequence[bytes] = ()) -> None:
    """One send for the whole frame: small writes in a row would meet Nagle's algorithm and delayed
    ACKs (tens of milliseconds of waiting on a request that computes in ten)."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    payload_size = sum(len(b) for b in blobs)
    sock.sendall(b"".join([PREFIX.pack(MAGIC, len(head), payload_size), head, *blobs]))


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        read = sock.recv_into(view[got:], min(n - got, 1 << 20))
        if read == 0:
            raise ConnectionError("connection closed mid-frame")
        got += read
    return bytes(buffer)


def read_frame(sock: socket.socket, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> tuple[dict, bytes]:
    magic, header_size, payload_size = PREFIX.unpack(_read_exactly(sock, PREFIX.size))
    if magic != MAGIC:
        raise ConnectionError("not a Light Bulb inference frame")
    if header_size > MAX_HEADER or payload_size > max_payload:
        raise ConnectionError(f"frame too large ({header_size} + {payload_size} bytes)")
    header = json.loads(_read_exactly(sock, header_size).decode("utf-8"))
    payload = _read_exactly(sock, payload_size) if payload_size else b""
    return header, payload


def split_payload(payload: bytes, sizes: Sequence[int]) -> list[bytes]:
    if sum(sizes) != len(payload) or any(s < 0 for s in sizes):
        raise ValueError("payload sizes do not add up")
    out, start = [], 0
    for size in sizes:
        out.append(payload[start : start + size])
        start += size
    return out
