"""diskseqd client: open block devices by diskseq through the diskseqd daemon and get an fd
that is provably that disk instance (re-checked on the fd in this process).

    import diskseqd
    with diskseqd.connect() as client:            # $DISKSEQD_SOCKET, else /run/diskseqd.sock
        with client.open(42, partition=1) as opened:
            os.pread(opened.fd, 512, 0)

`diskseqd.aio` is the same for asyncio (imported with this package).
"""
from __future__ import annotations

from . import aio
from ._errors import ArgumentError, DiskseqConnectionError, DiskseqError, ErrorCodeName
from ._types import AccessMode, Device, HelloInfo, Opened, WatchEvent, WatchEventKind
from ._wire import DEFAULT_SOCKET_PATH, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_VERSION, resolve_socket_path
from .client import Client, Pending, Watch, connect

__version__ = "0.1.0"

__all__ = [
    "AccessMode", "ArgumentError", "Client", "DEFAULT_SOCKET_PATH", "Device", "DiskseqConnectionError",
    "DiskseqError", "ErrorCodeName", "HelloInfo", "MAX_REQUEST_BYTES", "MAX_RESPONSE_BYTES", "Opened",
    "PROTOCOL_VERSION", "Pending", "Watch", "WatchEvent", "WatchEventKind", "aio", "connect",
    "resolve_socket_path",
]
