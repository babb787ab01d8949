"""Request ids and the routing of each response, with its fds, to the request it answers.

Shared by the sync and the asyncio client; no I/O here. fd ownership: every fd that
arrives goes to exactly one owner — the call it answers (which closes any it does not hand
on), or, when no call waits for that id (cancelled, timed out, already complete, or a
stray), this module, which closes it at once.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Protocol, TypeVar

from ._errors import DiskseqError, protocol_error
from ._fdcheck import recheck_fd
from ._packets import Packet, close_fds
from ._types import Device, HelloInfo, Opened, WatchEvent
from ._wire import (MAX_RESPONSE_BYTES, PreparedRequest, body_of, decode_response, device_from_wire,
                    devices_from_wire, event_from_wire, hello_from_wire, raise_if_error)

T = TypeVar("T")
Settle = Callable[[T | None, BaseException | None], None]
"""Receives a call's outcome once: (result, None) or (None, error)."""


class Handler(Protocol):
    """Receives the responses to one request."""

    def on_response(self, response: Any, fds: list[int]) -> bool:
        """One response and its fds (now the handler's). True when the request is complete."""

    def on_failure(self, error: BaseException) -> None:
        """The connection failed before the request completed."""


class ProtocolViolation(Exception):
    """The daemon broke the contract on this connection; it must be closed with `error`."""

    def __init__(self, error: DiskseqError) -> None:
        super().__init__(str(error))
        self.error = error


def _no_fds(response: Any, fds: list[int]) -> None:
    if fds:
        close_fds(fds)
        raise protocol_error(f"{len(fds)} fd(s) arrived with a {body_of(response) or 'bodiless'} response")


def accept_opened(prepared: PreparedRequest, response: Any, fds: list[int]) -> Opened:
    """Takes the fd of an Opened response after checking it; closes every fd on failure."""
    if body_of(response) != "opened":
        _no_fds(response, fds)
        raise_if_error(response, "opened")
    if len(fds) != 1:
        close_fds(fds)
        raise protocol_error(f"Opened carried {len(fds)} fds instead of exactly one")
    fd = fds[0]
    try:
        if not response.opened.HasField("device"):
            raise protocol_error("Opened without a device")
        device: Device = device_from_wire(response.opened.device)
        if (device.diskseq, device.partition) != (prepared.diskseq, prepared.partition):
            raise protocol_error(f"asked for diskseq {prepared.diskseq} partition {prepared.partition}, "
                                 f"Opened describes diskseq {device.diskseq} partition {device.partition}")
        recheck_fd(fd, prepared.diskseq, prepared.partition, device)
    except BaseException:
        close_fds([fd])
        raise
    return Opened(fd, device)


class Call(Generic[T]):
    """A request answered by one response: `accept` turns it into the result."""

    def __init__(self, accept: Callable[[Any, list[int]], T], settle: Settle[T]) -> None:
        self._accept = accept
        self._settle = settle

    def on_response(self, response: Any, fds: list[int]) -> bool:
        try:
            result = self._accept(response, fds)
        except DiskseqError as error:
            self._settle(None, error)
        else:
            self._settle(result, None)
        return True

    def on_failure(self, error: BaseException) -> None:
        self._settle(None, error)


def open_call(prepared: PreparedRequest, settle: Settle[Opened]) -> Call[Opened]:
    return Call(lambda response, fds: accept_opened(prepared, response, fds), settle)


def hello_call(settle: Settle[HelloInfo]) -> Call[HelloInfo]:
    def accept(response: Any, fds: list[int]) -> HelloInfo:
        _no_fds(response, fds)
        raise_if_error(response, "hello")
        return hello_from_wire(response)
    return Call(accept, settle)


class ListCall:
    """A List, joined over the packets of a split DeviceList (all but the last: more = true)."""

    def __init__(self, settle: Settle[list[Device]]) -> None:
        self._settle = settle
        self._devices: list[Device] = []

    def on_response(self, response: Any, fds: list[int]) -> bool:
        try:
            _no_fds(response, fds)
            devices, more = devices_from_wire(response)
        except DiskseqError as error:
            self._settle(None, error)
            return True
        self._devices.extend(devices)
        if more:
            return False
        self._settle(self._devices, None)
        return True

    def on_failure(self, error: BaseException) -> None:
        self._settle(None, error)


class Router:
    """The pending requests of one connection, by id."""

    def __init__(self) -> None:
        self._pending: dict[int, Handler] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._pending)

    def register(self, prepared: PreparedRequest, handler: Handler) -> tuple[int, bytes]:
        """Assigns an id, encodes (ArgumentError beyond 4096 bytes: nothing registered) and
        registers the handler. Returns the id and the packet to send."""
        request_id = self._next_id
        data = prepared.encode(request_id)
        self._next_id += 1
        self._pending[request_id] = handler
        return request_id, data

    def forget(self, request_id: int) -> None:
        """Stops waiting for `request_id`: a later response to it is dropped, its fds closed."""
        self._pending.pop(request_id, None)

    def dispatch(self, packet: Packet) -> None:
        """Hands one packet to its handler. Raises ProtocolViolation (fds closed) when the
        connection must be closed."""
        if packet.truncated or packet.control_truncated:
            close_fds(packet.fds)
            what = (f"a response longer than {MAX_RESPONSE_BYTES} bytes" if packet.truncated
                    else "more fds than one response may carry")
            raise ProtocolViolation(protocol_error(f"received {what}"))
        try:
            response = decode_response(packet.data)
        except DiskseqError as error:
            close_fds(packet.fds)
            raise ProtocolViolation(error) from None
        handler = self._pending.get(response.id)
        if handler is None:
            close_fds(packet.fds)  # a late answer to a forgotten request, or a stray
            return
        done = True
        try:
            done = handler.on_response(response, packet.fds)
        finally:
            if done:
                self._pending.pop(response.id, None)

    def fail_all(self, error: BaseException) -> None:
        """Fails every pending request (the connection is gone)."""
        handlers = list(self._pending.values())
        self._pending.clear()
        for handler in handlers:
            handler.on_failure(error)


#: A watch is the only request on its connection, so it has the first id.
WATCH_REQUEST_ID = 1


def watch_event(packet: Packet) -> WatchEvent | None:
    """One packet of a watch connection as an event; None for a packet of another id (its
    fds closed). Raises DiskseqError when the stream ends in an error (fds closed) and
    ProtocolViolation when the connection must be closed."""
    if packet.truncated or packet.control_truncated:
        close_fds(packet.fds)
        raise ProtocolViolation(protocol_error("received a truncated packet on a watch"))
    try:
        response = decode_response(packet.data)
    except DiskseqError as error:
        close_fds(packet.fds)
        raise ProtocolViolation(error) from None
    if response.id != WATCH_REQUEST_ID:
        close_fds(packet.fds)
        return None
    if packet.fds:
        close_fds(packet.fds)
        raise ProtocolViolation(protocol_error("an fd arrived with a watch response"))
    return event_from_wire(response)
