"""Requests and responses: argument checks, encoding, and what a decoded Response means.

Both clients (sync and asyncio) build their requests and read their responses here, and
the wire test vectors (test/vectors/wire-vectors.json) exercise exactly this code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final, Mapping

from . import _proto
from ._errors import ArgumentError, error_from_wire, protocol_error
from ._types import Device, HelloInfo, WatchEvent, WatchEventKind

PROTOCOL_VERSION: Final = 1
#: Largest Request packet a client may send (the daemon drops the connection beyond it).
MAX_REQUEST_BYTES: Final = 4096
#: Largest Response packet the daemon sends; the client receives into a buffer this big.
MAX_RESPONSE_BYTES: Final = 65536
DEFAULT_SOCKET_PATH: Final = "/run/diskseqd.sock"

_UINT32_MAX: Final = 0xFFFF_FFFF
_UINT64_MAX: Final = (1 << 64) - 1
_ACCESS: Final[dict[str, int]] = {"read-only": 0, "read-write": 1, "write-only": 2}
_EVENT_KINDS: Final[dict[int, WatchEventKind]] = {1: "added", 2: "removed", 3: "changed", 4: "synced"}


def resolve_socket_path(explicit: str | os.PathLike[str] | None = None) -> str:
    """The socket path: `explicit`, else $DISKSEQD_SOCKET, else /run/diskseqd.sock."""
    if explicit is not None and os.fspath(explicit) != "":
        return os.fspath(explicit)
    return os.environ.get("DISKSEQD_SOCKET") or DEFAULT_SOCKET_PATH


def _integer(name: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python; a True diskseq is a bug, not the number 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ArgumentError(f"{name} must be from {low} to {high}, got {value}")
    return int(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be a bool, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A checked request body, ready to be encoded with an id."""

    body: Any
    """A Request message without its id."""
    diskseq: int = 0
    """For an open: the instance to re-check on the received fd."""
    partition: int = 0

    def encode(self, request_id: int) -> bytes:
        """The packet for this request under `request_id`; ArgumentError beyond 4096 bytes."""
        self.body.id = request_id
        data: bytes = self.body.SerializeToString(deterministic=True)
        if len(data) > MAX_REQUEST_BYTES:
            raise ArgumentError(f"request of {len(data)} bytes exceeds the protocol limit of {MAX_REQUEST_BYTES}")
        return data


def prepare_open(diskseq: object, partition: object = 0, access: object = "read-only", *,
                 exclusive: object = False, direct: object = False, nonblock: object = False,
                 sync: object = False, dsync: object = False, wait_ms: object = 0,
                 expect: Mapping[str, str] | None = None) -> PreparedRequest:
    """Checks open() arguments and builds the OpenRequest. Raises ArgumentError for what the
    wire cannot carry or the daemon would refuse anyway (diskseq 0); which `expect` keys are
    allowed is the daemon's to say (INVALID_ARGUMENT), so newer keys keep working."""
    checked_diskseq = _integer("diskseq", diskseq, 1, _UINT64_MAX)
    checked_partition = _integer("partition", partition, 0, _UINT32_MAX)
    if not isinstance(access, str) or access not in _ACCESS:
        raise ArgumentError(f"access must be one of {', '.join(map(repr, _ACCESS))}, got {access!r}")
    request = _proto.Request()
    body = request.open
    body.diskseq = checked_diskseq
    body.partition = checked_partition
    body.access = _ACCESS[access]
    body.exclusive = _flag("exclusive", exclusive)
    body.direct = _flag("direct", direct)
    body.nonblock = _flag("nonblock", nonblock)
    body.sync = _flag("sync", sync)
    body.dsync = _flag("dsync", dsync)
    body.wait_ms = _integer("wait_ms", wait_ms, 0, _UINT32_MAX)
    if expect is not None:
        if not isinstance(expect, Mapping):
            raise ArgumentError(f"expect must be a mapping of str to str, got {type(expect).__name__}")
        for key, value in expect.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ArgumentError(f"expect must map str to str, got {key!r}: {value!r}")
            body.expect[key] = value
    return PreparedRequest(request, checked_diskseq, checked_partition)


def prepare_list(include_partitions: object = False) -> PreparedRequest:
    """The ListRequest."""
    request = _proto.Request()
    request.list.include_partitions = _flag("include_partitions", include_partitions)
    return PreparedRequest(request)


def prepare_watch() -> PreparedRequest:
    """The WatchRequest."""
    request = _proto.Request()
    request.watch.SetInParent()
    return PreparedRequest(request)


def prepare_hello(client_name: object = "") -> PreparedRequest:
    """Hello with this client's protocol version."""
    if not isinstance(client_name, str):
        raise ArgumentError(f"client_name must be a str, got {type(client_name).__name__}")
    request = _proto.Request()
    request.hello.protocol_version = PROTOCOL_VERSION
    request.hello.client_name = client_name
    return PreparedRequest(request)


def decode_response(data: bytes) -> Any:
    """Parses one Response packet; a protocol error when it does not decode."""
    try:
        return _proto.Response.FromString(data)
    except Exception as error:  # DecodeError, or the runtime's own on malformed input
        raise protocol_error(f"undecodable response: {error}") from None


def body_of(response: Any) -> str | None:
    """Which body a Response carries: "error", "hello", "opened", "devices", "event" or None."""
    body: str | None = response.WhichOneof("body")
    return body


def raise_if_error(response: Any, expected: str) -> None:
    """Raises the daemon's Error as a DiskseqError, or a protocol error for a wrong body."""
    body = body_of(response)
    if body == expected:
        return
    if body == "error":
        error = response.error
        raise error_from_wire(error.code, error.message, error.os_errno)
    raise protocol_error(f"expected {expected}, got {body or 'an empty response'}")


def device_from_wire(device: Any) -> Device:
    """A `Device` message as a Device."""
    return Device(
        diskseq=device.diskseq, partition=device.partition, name=device.name,
        major=device.major, minor=device.minor, size_bytes=device.size_bytes,
        read_only=device.read_only, removable=device.removable, driver=device.driver,
        attributes=dict(device.attributes),
    )


def hello_from_wire(response: Any) -> HelloInfo:
    """A HelloReply (after raise_if_error(response, "hello"))."""
    reply = response.hello
    return HelloInfo(reply.protocol_version, reply.server_version, tuple(reply.features))


def event_from_wire(response: Any) -> WatchEvent:
    """A DeviceEvent response as a WatchEvent; a DiskseqError for an Error or an unknown kind."""
    raise_if_error(response, "event")
    event = response.event
    kind = _EVENT_KINDS.get(event.kind)
    if kind is None:
        raise protocol_error(f"unknown event kind {event.kind}")
    return WatchEvent(kind, device_from_wire(event.device) if event.HasField("device") else None)


def devices_from_wire(response: Any) -> tuple[list[Device], bool]:
    """One DeviceList part: its devices, and whether more parts follow."""
    raise_if_error(response, "devices")
    return [device_from_wire(d) for d in response.devices.devices], response.devices.more

