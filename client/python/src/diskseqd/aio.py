"""The asyncio client: the same requests as diskseqd.Client, as coroutines.

Requests pipeline naturally: every call sends at once, and the event loop's reader hands
each answer to the call it belongs to. Cancelling a call (task.cancel(), asyncio.timeout,
wait_for) forgets its id; an fd that arrives for it later is closed on arrival. A client
belongs to the event loop it was connected on.

    client = await diskseqd.aio.connect()
    try:
        opened = await client.open(42, partition=1)
    finally:
        await client.close()
"""
from __future__ import annotations

import asyncio
import collections
import os
import socket
from typing import Any, AsyncIterator, Callable, Mapping, TypeVar

from ._errors import DiskseqConnectionError, closed_error, connection_failed
from ._packets import receive_packet
from ._router import (WATCH_REQUEST_ID, Handler, ListCall, ProtocolViolation, Router, hello_call, open_call,
                      watch_event)
from ._types import AccessMode, Device, HelloInfo, Opened, WatchEvent
from ._wire import PreparedRequest, prepare_hello, prepare_list, prepare_open, prepare_watch, resolve_socket_path

T = TypeVar("T")
_SEND_FLAGS = socket.MSG_NOSIGNAL


async def _connect_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except OSError as error:
        sock.close()
        raise connection_failed(path, "cannot connect to diskseqd at", error) from None
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(socket_path: str | os.PathLike[str] | None = None) -> AsyncClient:
    """Connects to diskseqd at `socket_path`, else $DISKSEQD_SOCKET, else /run/diskseqd.sock.
    Raises DiskseqConnectionError (code ENOENT, ECONNREFUSED, EACCES ...)."""
    path = resolve_socket_path(socket_path)
    return AsyncClient(await _connect_socket(path), path)


class AsyncClient:
    """One connection to diskseqd on the running event loop. `await close()` (or use
    `async with`) when done; fds it has delivered belong to the caller."""

    def __init__(self, sock: socket.socket, socket_path: str) -> None:
        """Use diskseqd.aio.connect()."""
        self.socket_path = socket_path
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._router = Router()
        self._outbox: collections.deque[bytes] = collections.deque()
        self._closed = False
        self._failure: BaseException | None = None
        self._watches: set[AsyncWatch] = set()
        self._loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def closed(self) -> bool:
        """True after close(), or once the connection failed."""
        return self._closed

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, diskseq: int, partition: int = 0, access: AccessMode = "read-only", *,
                   exclusive: bool = False, direct: bool = False, nonblock: bool = False,
                   sync: bool = False, dsync: bool = False, wait_ms: int = 0,
                   expect: Mapping[str, str] | None = None) -> Opened:
        """As diskseqd.Client.open(); bound the wait with asyncio.timeout() instead of `timeout`."""
        prepared = prepare_open(diskseq, partition, access, exclusive=exclusive, direct=direct, nonblock=nonblock,
                                sync=sync, dsync=dsync, wait_ms=wait_ms, expect=expect)
        result: Opened = await self._call(prepared, lambda settle: open_call(prepared, settle))
        return result

    async def list(self, include_partitions: bool = False) -> list[Device]:
        """As diskseqd.Client.list()."""
        result: list[Device] = await self._call(prepare_list(include_partitions), ListCall)
        return result

    async def hello(self, client_name: str = "") -> HelloInfo:
        """As diskseqd.Client.hello()."""
        result: HelloInfo = await self._call(prepare_hello(client_name), hello_call)
        return result

    def watch(self) -> AsyncWatch:
        """As diskseqd.Client.watch(), iterated with `async for`; aclose() it (or use
        `async with`), or close this client, to end it. It connects on first use."""
        if self._closed:
            raise self._failure or closed_error(self.socket_path)
        watch = AsyncWatch(self.socket_path, self._watches.discard)
        self._watches.add(watch)
        return watch

    async def close(self) -> None:
        """Closes the connection and every watch; idempotent. Calls still waiting raise
        DiskseqConnectionError "CONNECTION_CLOSED"."""
        for watch in list(self._watches):
            await watch.aclose()
        self._fail(closed_error(self.socket_path))

    # --- the connection ---------------------------------------------------------------

    async def _call(self, prepared: PreparedRequest, make_handler: Callable[[Any], Handler]) -> Any:
        if self._closed:
            raise self._failure or closed_error(self.socket_path)
        future: asyncio.Future[Any] = self._loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # cancelled: nobody will take the result
                if isinstance(result, Opened):
                    result.close()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        request_id, data = self._router.register(prepared, make_handler(settle))
        self._send(data)
        try:
            return await future
        except asyncio.CancelledError:
            self._router.forget(request_id)
            # The answer may have been set just before the cancellation reached this task.
            if future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if isinstance(result, Opened):
                    result.close()
            raise

    def _send(self, data: bytes) -> None:
        if self._outbox:
            self._outbox.append(data)  # keep order behind what waits for the socket
            return
        try:
            self._sock.send(data, _SEND_FLAGS)
        except BlockingIOError:
            self._outbox.append(data)
            self._loop.add_writer(self._sock.fileno(), self._on_writable)
        except OSError as error:
            self._fail(connection_failed(self.socket_path, "connection to diskseqd failed:", error))

    def _on_writable(self) -> None:
        while self._outbox and not self._closed:
            try:
                self._sock.send(self._outbox[0], _SEND_FLAGS)
            except BlockingIOError:
                return
            except OSError as error:
                self._fail(connection_failed(self.socket_path, "connection to diskseqd failed:", error))
                return
            self._outbox.popleft()
        if not self._closed:
            self._loop.remove_writer(self._sock.fileno())

    def _on_readable(self) -> None:
        while not self._closed:
            try:
                packet = receive_packet(self._sock)
            except BlockingIOError:
                return
            except OSError as error:
                self._fail(connection_failed(self.socket_path, "connection to diskseqd failed:", error))
                return
            if packet is None:
                self._fail(closed_error(self.socket_path, "diskseqd closed the connection"))
                return
            try:
                self._router.dispatch(packet)
            except ProtocolViolation as violation:
                self._fail(violation.error)
                return

    def _fail(self, error: BaseException) -> None:
        if self._closed:
            return
        self._closed = True
        self._failure = error
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        self._outbox.clear()
        self._sock.close()
        self._router.fail_all(error)


class AsyncWatch:
    """A running watch: `async for event in watch`. Reads only as fast as it is iterated."""

    def __init__(self, socket_path: str, on_end: Callable[[AsyncWatch], None]) -> None:
        """Use AsyncClient.watch()."""
        self.socket_path = socket_path
        self._on_end = on_end
        self._sock: socket.socket | None = None
        self._closed = False
        self._wakeup: asyncio.Future[None] | None = None

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self.read()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self) -> WatchEvent | None:
        """The next event; None once the watch is closed. Raises the error that ended the
        stream (DiskseqError, DiskseqConnectionError)."""
        if self._closed:
            return None
        if self._sock is None:
            await self._start()
        loop = asyncio.get_running_loop()
        while not self._closed:
            sock = self._sock
            assert sock is not None
            try:
                packet = receive_packet(sock)
            except BlockingIOError:
                await self._readable(loop, sock)
                continue
            except OSError as error:
                self._end()
                raise connection_failed(self.socket_path, "watch connection to diskseqd failed:", error) from None
            if packet is None:
                self._end()
                raise closed_error(self.socket_path, "diskseqd closed the watch connection")
            try:
                event = watch_event(packet)
            except ProtocolViolation as violation:
                self._end()
                raise violation.error from None
            except BaseException:
                self._end()
                raise
            if event is not None:
                return event
        return None

    async def _start(self) -> None:
        sock = await _connect_socket(self.socket_path)
        if self._closed:  # closed while connecting
            sock.close()
            return
        try:
            sock.send(prepare_watch().encode(WATCH_REQUEST_ID), _SEND_FLAGS)
        except OSError as error:
            sock.close()
            self._end()
            raise connection_failed(self.socket_path, "cannot start a watch on", error) from None
        self._sock = sock

    async def _readable(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        wakeup: asyncio.Future[None] = loop.create_future()
        self._wakeup = wakeup
        fd = sock.fileno()

        def wake() -> None:
            if not wakeup.done():
                wakeup.set_result(None)
        loop.add_reader(fd, wake)
        try:
            await wakeup
        finally:
            self._wakeup = None
            if not self._closed:
                loop.remove_reader(fd)

    async def aclose(self) -> None:
        """Ends the watch and closes its connection; idempotent."""
        self._end()

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            fd = self._sock.fileno()
            if self._wakeup is not None:
                asyncio.get_running_loop().remove_reader(fd)
                if not self._wakeup.done():
                    self._wakeup.set_result(None)
            self._sock.close()
        self._on_end(self)


__all__ = ["AsyncClient", "AsyncWatch", "DiskseqConnectionError", "connect"]
