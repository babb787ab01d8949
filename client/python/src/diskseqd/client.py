"""The blocking client: one pipelining connection, safe to share between threads.

Pipelining: every request is sent at once and answered by id, in any order. Either issue
requests from several threads (each blocks only for its own answer), or, from one thread,
submit several with the submit_* methods and collect each Pending's result() later.

No reader thread: whichever caller is waiting reads the socket and hands every packet to
the request it answers, then wakes the others (a "leader/follower" loop), so a lone caller
reads its own answer with no thread hand-off.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from ._errors import DiskseqConnectionError, closed_error, connection_failed
from ._packets import close_fds, connect_socket, receive_packet
from ._router import (WATCH_REQUEST_ID, Handler, ListCall, ProtocolViolation, Router, hello_call, open_call,
                      watch_event)
from ._types import AccessMode, Device, HelloInfo, Opened, WatchEvent
from ._wire import PreparedRequest, prepare_hello, prepare_list, prepare_open, prepare_watch, resolve_socket_path

T = TypeVar("T")
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def connect(socket_path: str | os.PathLike[str] | None = None) -> Client:
    """Connects to diskseqd at `socket_path`, else $DISKSEQD_SOCKET, else /run/diskseqd.sock.
    Raises DiskseqConnectionError (code ENOENT, ECONNREFUSED, EACCES ...)."""
    path = resolve_socket_path(socket_path)
    return Client(connect_socket(path, blocking=False), path)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _poll_ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000) + 1


class Pending(Generic[T]):
    """A submitted request. result() waits for its outcome; cancel() gives it up."""

    __slots__ = ("_client", "_done", "_result", "_error", "_cancelled", "_taken", "request_id")

    def __init__(self, client: Client) -> None:
        self._client = client
        self._done = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._taken = False
        self.request_id = 0
        """The request's id on its connection."""

    def _settle(self, result: T | None, error: BaseException | None) -> None:
        # Runs under the client's lock.
        if self._cancelled or self._done:
            if isinstance(result, Opened):
                result.close()  # nobody will take it
            return
        self._done, self._result, self._error = True, result, error

    def done(self) -> bool:
        """True once the outcome is in (or the request was cancelled)."""
        return self._done or self._cancelled

    def result(self, timeout: float | None = None) -> T:
        """The outcome: the result, or the DiskseqError / DiskseqConnectionError it failed
        with. After `timeout` seconds without an answer raises TimeoutError and cancels the
        request (an fd that arrives later for it is closed)."""
        if self._cancelled:
            raise RuntimeError("this request was cancelled")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._client._run_until(lambda: self._done, deadline):
            with self._client._lock:
                timed_out = not self._done  # the answer may have come in meanwhile
                if timed_out:
                    self._cancelled = True
                    self._client._router.forget(self.request_id)
            if timed_out:
                raise TimeoutError(f"no answer to request {self.request_id} within {timeout} s")
        if self._error is not None:
            raise self._error
        self._taken = True
        return self._result  # type: ignore[return-value]

    def cancel(self) -> None:
        """Gives the request up: the daemon's answer, when it comes, is dropped and its fd
        closed; an Opened already received and not taken by result() is closed now."""
        with self._client._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self._client._router.forget(self.request_id)
            if self._done and not self._taken and isinstance(self._result, Opened):
                self._result.close()

    def __del__(self) -> None:
        # A safety net only (the contract is result() or cancel()): an Opened nobody took.
        result = getattr(self, "_result", None)
        if isinstance(result, Opened) and not getattr(self, "_taken", True):
            result.close()


class Client:
    """One connection to diskseqd. Close it (or use `with`) when done; fds it has delivered
    stay open: they belong to the caller."""

    def __init__(self, sock: socket.socket, socket_path: str) -> None:
        """Use connect()."""
        self.socket_path = socket_path
        self._sock = sock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._router = Router()
        self._reading = False
        self._users = 0
        """Threads using the socket (in send() or poll()): it is closed when the last leaves."""
        self._closed = False
        self._failure: BaseException | None = None
        self._watches: set[Watch] = set()

    @property
    def closed(self) -> bool:
        """True after close(), or once the connection failed."""
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -------------------------------------------------------------------

    def submit_open(self, diskseq: int, partition: int = 0, access: AccessMode = "read-only", *,
                    exclusive: bool = False, direct: bool = False, nonblock: bool = False,
                    sync: bool = False, dsync: bool = False, wait_ms: int = 0,
                    expect: Mapping[str, str] | None = None) -> Pending[Opened]:
        """Sends an open (arguments as for open()) and returns at once."""
        prepared = prepare_open(diskseq, partition, access, exclusive=exclusive, direct=direct, nonblock=nonblock,
                                sync=sync, dsync=dsync, wait_ms=wait_ms, expect=expect)
        return self._submit(prepared, lambda settle: open_call(prepared, settle))

    def open(self, diskseq: int, partition: int = 0, access: AccessMode = "read-only", *,
             exclusive: bool = False, direct: bool = False, nonblock: bool = False,
             sync: bool = False, dsync: bool = False, wait_ms: int = 0,
             expect: Mapping[str, str] | None = None, timeout: float | None = None) -> Opened:
        """Opens partition `partition` (0: the whole disk) of disk instance `diskseq`.

        Returns once this process has itself checked the received fd: a block device with
        the described device number, the requested partition (sysfs), still bound if it is a
        loop device, and BLKGETDISKSEQ = `diskseq`; otherwise the fd is closed and
        DiskseqError "STALE" is raised. The daemon's refusals raise DiskseqError with its
        code and os_errno. `wait_ms`: how long the daemon may wait for the device or
        partition to appear. `expect`: sysfs attributes (e.g. "loop/backing_file") that
        must hold at open time. `timeout` (seconds, client side): TimeoutError, and an fd
        arriving later is closed. Arguments the wire cannot carry, and diskseq 0, raise
        ArgumentError before anything is sent.
        """
        return self.submit_open(diskseq, partition, access, exclusive=exclusive, direct=direct, nonblock=nonblock,
                                sync=sync, dsync=dsync, wait_ms=wait_ms, expect=expect).result(timeout)

    def submit_list(self, include_partitions: bool = False) -> Pending[list[Device]]:
        """Sends a list request and returns at once."""
        return self._submit(prepare_list(include_partitions), ListCall)

    def list(self, include_partitions: bool = False, *, timeout: float | None = None) -> list[Device]:
        """The daemon's devices (disks, and partitions when asked), a DeviceList split over
        several packets joined."""
        return self.submit_list(include_partitions).result(timeout)

    def submit_hello(self, client_name: str = "") -> Pending[HelloInfo]:
        """Sends Hello and returns at once."""
        return self._submit(prepare_hello(client_name), hello_call)

    def hello(self, client_name: str = "", *, timeout: float | None = None) -> HelloInfo:
        """Hello (optional in the protocol); DiskseqError "UNSUPPORTED" on a version mismatch."""
        return self.submit_hello(client_name).result(timeout)

    def watch(self) -> Watch:
        """Watches devices come and go on a connection of its own (the protocol ends a watch
        only by closing its connection): an "added" event for every current device, one
        "synced", then live events. Iterate it; close() it, leave its `with` block, or close
        this client to end it."""
        if self._closed:
            raise self._failure or closed_error(self.socket_path)
        watch = Watch(self.socket_path, self._watches.discard)
        self._watches.add(watch)
        return watch

    def close(self) -> None:
        """Closes the connection and every watch; idempotent. Requests still waiting raise
        DiskseqConnectionError "CONNECTION_CLOSED"."""
        for watch in list(self._watches):
            watch.close()
        self._fail(closed_error(self.socket_path))

    # --- the connection ---------------------------------------------------------------

    def _submit(self, prepared: PreparedRequest, make_handler: Callable[[Any], Handler]) -> Pending[Any]:
        pending: Pending[Any] = Pending(self)
        with self._lock:
            if self._closed:
                raise self._failure or closed_error(self.socket_path)
            pending.request_id, data = self._router.register(prepared, make_handler(pending._settle))
            self._users += 1
        try:
            self._send(data)
        finally:
            self._leave()
        return pending

    def _send(self, data: bytes) -> None:
        """Sends one packet. While the socket is full, reads answers (when nobody else does)
        so that a caller with many requests in flight cannot stall its own connection."""
        with self._send_lock:
            while not self._closed:
                try:
                    self._sock.send(data, _SEND_FLAGS)
                    return
                except BlockingIOError:
                    pass
                except OSError as error:
                    self._fail(connection_failed(self.socket_path, "connection to diskseqd failed:", error))
                    return
                with self._cond:
                    lead = not self._reading and not self._closed
                    if lead:
                        self._reading = True
                        self._users += 1
                if lead:
                    try:
                        self._read_once(None, writable=True)
                    finally:
                        self._release_reader()
                else:
                    select.select([], [self._sock], [], 0.05)
            # Closed meanwhile: the request has been failed with the connection's error.

    def _run_until(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Reads and dispatches packets (or waits while another thread does) until done()
        or the deadline; returns done()."""
        while True:
            with self._cond:
                if done():
                    return True
                if self._closed:
                    return done()
                if self._reading:
                    remaining = _remaining(deadline)
                    if remaining == 0:
                        return False
                    self._cond.wait(remaining)
                    continue
                self._reading = True
                self._users += 1
            try:
                if not self._read_once(deadline) and deadline is not None and time.monotonic() >= deadline:
                    with self._cond:
                        return done()
            finally:
                self._release_reader()

    def _release_reader(self) -> None:
        with self._cond:
            self._reading = False
            self._cond.notify_all()
        self._leave()

    def _leave(self) -> None:
        """One use of the socket ends; the last one after a failure closes it (a thread
        may be inside poll() or send() on it until then)."""
        with self._lock:
            self._users -= 1
            if self._closed and self._users == 0:
                self._sock.close()

    def _read_once(self, deadline: float | None, writable: bool = False) -> bool:
        """Waits for the socket (readable, or writable when `writable`) until the deadline
        and handles what can be read. Only the reader (self._reading) calls this."""
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | (select.POLLOUT if writable else 0))
        events = poller.poll(_poll_ms(_remaining(deadline)))
        if not events or not events[0][1] & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return False
        while not self._closed:
            try:
                packet = receive_packet(self._sock)
            except BlockingIOError:
                return True
            except OSError as error:
                self._fail(connection_failed(self.socket_path, "connection to diskseqd failed:", error))
                return True
            if packet is None:
                self._fail(closed_error(self.socket_path, "diskseqd closed the connection"))
                return True
            with self._lock:
                if self._closed:
                    close_fds(packet.fds)
                    return True
                try:
                    self._router.dispatch(packet)
                except ProtocolViolation as violation:
                    self._fail_locked(violation.error)
                    return True
        return True

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self._fail_locked(error)

    def _fail_locked(self, error: BaseException) -> None:
        if self._closed:
            return
        self._closed = True
        self._failure = error
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread in poll(); send() fails
        except OSError:
            pass
        self._router.fail_all(error)
        self._cond.notify_all()
        if self._users == 0:
            self._sock.close()


class Watch:
    """A running watch: iterate it for WatchEvents (the stream ends only by close(), or with
    the error that ended it: DiskseqError, DiskseqConnectionError)."""

    def __init__(self, socket_path: str, on_end: Callable[[Watch], None]) -> None:
        """Use Client.watch()."""
        self.socket_path = socket_path
        self._on_end = on_end
        self._lock = threading.Lock()
        self._reading = False
        self._closed = False
        self._sock = connect_socket(socket_path, blocking=False)
        try:
            data = prepare_watch().encode(WATCH_REQUEST_ID)
            self._sock.send(data, socket.MSG_NOSIGNAL)
        except OSError as error:
            self._sock.close()
            raise connection_failed(socket_path, "cannot start a watch on", error) from None

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        event = self.read()
        if event is None:
            raise StopIteration
        return event

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def read(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None once the watch is closed. TimeoutError after `timeout`
        seconds without one (the watch goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return None
            if self._reading:
                raise RuntimeError("Watch.read() called from two threads at once")
            self._reading = True
        try:
            return self._read(deadline, timeout)
        finally:
            with self._lock:
                self._reading = False
                if self._closed and self._sock.fileno() >= 0:
                    self._sock.close()

    def _read(self, deadline: float | None, timeout: float | None) -> WatchEvent | None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while not self._closed:
            try:
                packet = receive_packet(self._sock)
            except BlockingIOError:
                if not poller.poll(_poll_ms(_remaining(deadline))) and not self._closed:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError(f"no watch event within {timeout} s") from None
                continue
            except OSError as error:
                self._end()
                raise connection_failed(self.socket_path, "watch connection to diskseqd failed:", error) from None
            if self._closed:
                if packet is not None:
                    close_fds(packet.fds)
                return None
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

    def close(self) -> None:
        """Ends the watch and closes its connection; idempotent."""
        self._end()

    def _end(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if not self._reading:
                self._sock.close()
        self._on_end(self)


__all__ = ["Client", "DiskseqConnectionError", "Pending", "Watch", "connect"]
