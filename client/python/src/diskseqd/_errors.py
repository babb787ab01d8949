"""The errors the client raises.

- DiskseqError: the daemon refused a request (an `Error` response), or the client's own
  check of what the daemon sent failed. `code` is the protocol's ErrorCode name without its
  ERROR_CODE_ prefix ("NOT_FOUND", "STALE", ...).
- DiskseqConnectionError (a ConnectionError, so an OSError): the daemon cannot be reached,
  or the connection is gone. `code` is the errno name of the failed call ("ENOENT",
  "ECONNREFUSED", "EACCES", ...) or "CONNECTION_CLOSED".
- ArgumentError (both a ValueError and a TypeError): an argument the client refuses before
  anything is sent — what the wire cannot carry, or what the daemon would reject anyway.
"""
from __future__ import annotations

import errno as errno_module
from typing import Final, Literal

from ._proto import ERROR_CODE_NAMES

ErrorCodeName = Literal[
    "UNSPECIFIED", "NOT_FOUND", "STALE", "PERMISSION_DENIED", "BUSY", "INVALID_ARGUMENT",
    "TIMEOUT", "EXPECTATION_FAILED", "RESOURCE_EXHAUSTED", "UNSUPPORTED", "INTERNAL",
]

_WIRE_CODES: Final[dict[str, int]] = {name: number for number, name in ERROR_CODE_NAMES.items()}


class DiskseqError(Exception):
    """A refused request: an `Error` response from the daemon, or a failed client-side check."""

    code: ErrorCodeName
    """The ErrorCode name, e.g. "NOT_FOUND". An unknown wire value maps to "UNSPECIFIED"."""
    message: str
    """The daemon's message (or the client's, for its own checks)."""
    os_errno: int
    """The errno behind the failure (Error.os_errno), 0 when there is none."""
    wire_code: int
    """The numeric ErrorCode as it was (or would be) on the wire."""

    def __init__(self, code: ErrorCodeName, message: str, *, os_errno: int = 0, wire_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.os_errno = os_errno
        self.wire_code = _WIRE_CODES.get(code, 0) if wire_code is None else wire_code

    def __repr__(self) -> str:
        return f"DiskseqError({self.code!r}, {self.message!r}, os_errno={self.os_errno})"


def error_from_wire(code: int, message: str, os_errno: int) -> DiskseqError:
    """Turns the fields of an `Error` response into a DiskseqError."""
    name = ERROR_CODE_NAMES.get(code, "UNSPECIFIED")
    text = message or f"diskseqd refused the request ({ERROR_CODE_NAMES.get(code, str(code))})"
    return DiskseqError(name, text, os_errno=os_errno, wire_code=code)  # type: ignore[arg-type]


def protocol_error(message: str) -> DiskseqError:
    """The daemon sent something the contract does not allow. Code INTERNAL."""
    return DiskseqError("INTERNAL", f"protocol error from diskseqd: {message}")


class DiskseqConnectionError(ConnectionError):
    """The daemon cannot be reached, or the connection to it is closed."""

    code: str
    """errno name of the failed call ("ENOENT", "ECONNREFUSED", ...), or "CONNECTION_CLOSED"."""
    socket_path: str
    """The socket path of the connection."""

    def __init__(self, message: str, *, socket_path: str, os_errno: int | None = None, code: str | None = None) -> None:
        if os_errno:
            super().__init__(os_errno, message)
        else:
            super().__init__(message)
        self.code = code or (errno_module.errorcode.get(os_errno, "UNKNOWN") if os_errno else "CONNECTION_CLOSED")
        self.socket_path = socket_path

    def __str__(self) -> str:
        return self.strerror if self.strerror else super().__str__()


def closed_error(socket_path: str, message: str = "connection closed") -> DiskseqConnectionError:
    """The error a request gets when its connection is gone."""
    return DiskseqConnectionError(message, socket_path=socket_path, code="CONNECTION_CLOSED")


def connection_failed(socket_path: str, what: str, error: OSError) -> DiskseqConnectionError:
    """An OSError of a socket call, as a DiskseqConnectionError naming the socket."""
    return DiskseqConnectionError(f"{what} {socket_path}: {error.strerror or error}", socket_path=socket_path, os_errno=error.errno)


class ArgumentError(ValueError, TypeError):
    """An argument the client refuses before sending anything (one kind for every such case:
    catch it as ValueError or as TypeError)."""
