"""SOCK_SEQPACKET plumbing shared by both clients: connect, receive one packet with its fds,
close stray fds. One packet is one protobuf message; fds arrive in SCM_RIGHTS, received with
MSG_CMSG_CLOEXEC so no exec in this process can inherit one it has not handed out yet.
"""
from __future__ import annotations

import array
import os
import socket
from dataclasses import dataclass
from typing import Final, Iterable

from ._errors import connection_failed
from ._wire import MAX_RESPONSE_BYTES

#: Room for more fds than any response may carry (Opened carries one): a daemon that sends
#: more is caught by count, not by a truncated control message hiding how many came.
MAX_RECEIVED_FDS: Final = 16
_ANCILLARY_SIZE: Final = socket.CMSG_SPACE(MAX_RECEIVED_FDS * array.array("i").itemsize)


@dataclass(slots=True)
class Packet:
    """One received packet. `fds` are owned by whoever takes the packet."""

    data: bytes
    fds: list[int]
    truncated: bool
    """The packet was longer than MAX_RESPONSE_BYTES (a protocol violation)."""
    control_truncated: bool
    """More fds came than fit (the kernel dropped the rest; a protocol violation)."""


def close_fds(fds: Iterable[int]) -> None:
    """Closes fds nobody may keep."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # close(2) releases the descriptor even when it reports an error


def connect_socket(path: str, *, blocking: bool) -> socket.socket:
    """A connected SOCK_SEQPACKET socket (close-on-exec); DiskseqConnectionError on failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise connection_failed(path, "cannot connect to diskseqd at", error) from None
    sock.setblocking(blocking)
    return sock


def receive_packet(sock: socket.socket) -> Packet | None:
    """recvmsg of one packet and its fds. None at end of stream (the daemon closed).
    Raises BlockingIOError on a non-blocking socket with nothing to read, OSError else."""
    data, ancillary, flags, _ = sock.recvmsg(MAX_RESPONSE_BYTES, _ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    if not data and not fds and not flags & socket.MSG_TRUNC:
        return None  # SEQPACKET end of stream (the daemon never sends empty packets)
    return Packet(data, fds, bool(flags & socket.MSG_TRUNC), bool(flags & socket.MSG_CTRUNC))
