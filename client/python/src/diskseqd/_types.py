"""What requests return: Device, Opened, WatchEvent, HelloInfo."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Mapping

AccessMode = Literal["read-only", "read-write", "write-only"]
"""Access mode of a delivered fd; "read-only" is the protocol's safe default."""

WatchEventKind = Literal["added", "removed", "changed", "synced"]
"""What happened to a device; "synced": the initial snapshot of "added" events is complete."""


@dataclass(frozen=True, slots=True)
class Device:
    """One disk or partition as the daemon describes it (the `Device` message)."""

    diskseq: int
    """The disk instance's diskseq (for a partition: its parent disk's)."""
    partition: int
    """Partition number; 0 for the whole disk."""
    name: str
    """Kernel name, e.g. "loop3" or "loop3p1"."""
    major: int
    minor: int
    size_bytes: int
    read_only: bool
    removable: bool
    driver: str
    """The disk's driver (e.g. "loop"); empty when the daemon does not know one."""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The allow-listed sysfs attributes the device has (e.g. "loop/backing_file")."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch stream."""

    kind: WatchEventKind
    device: Device | None
    """The device; None for "synced"."""


@dataclass(frozen=True, slots=True)
class HelloInfo:
    """The daemon's answer to Hello."""

    protocol_version: int
    server_version: str
    features: tuple[str, ...]


class Opened:
    """A delivered fd and the device it is bound to. The caller owns `fd`: close it with
    close() or by leaving a `with opened:` block; detach() takes it over instead."""

    __slots__ = ("_fd", "device")

    def __init__(self, fd: int, device: Device) -> None:
        self._fd = fd
        self.device: Device = device
        """What the daemon verified the fd to be (and this client re-checked)."""

    @property
    def fd(self) -> int:
        """The fd (O_CLOEXEC), or -1 once closed or detached."""
        return self._fd

    def fileno(self) -> int:
        """The fd, so an Opened can be passed where a file-like object is expected."""
        if self._fd < 0:
            raise ValueError("the fd of this Opened is closed or detached")
        return self._fd

    def detach(self) -> int:
        """Returns the fd and gives up ownership of it (close() no longer closes it)."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def close(self) -> None:
        """Closes the fd; idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Opened(fd={self._fd}, device={self.device!r})"
