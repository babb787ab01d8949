"""Loop devices of the test's own, claimed race-free and always cleaned up.

Claim (as test/helpers/loop.ts and the addon's loopClaim do): LOOP_CTL_GET_FREE, open the
device O_RDWR|O_EXCL, LOOP_GET_STATUS64 must fail ENXIO (unbound); the exclusive open keeps
other claimers' LOOP_CONFIGURE out until ours. After a lost race, LOOP_CTL_ADD a fresh one.
Attach with LO_FLAGS_AUTOCLEAR, so a killed test leaves no bound device; hold one plain
O_RDONLY fd, which pins the binding. Teardown: partx --delete, LOOP_CLR_FD, close, and
LOOP_CTL_REMOVE the device when this process caused it to exist.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import tempfile
import time

from .image import Image, create_image

LOOP_CTL_ADD = 0x4C80
LOOP_CTL_REMOVE = 0x4C81
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CLR_FD = 0x4C01
LOOP_GET_STATUS64 = 0x4C05
LOOP_CONFIGURE = 0x4C0A
BLKGETDISKSEQ = 0x80081280
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8


def blk_diskseq(fd: int) -> int:
    buffer = bytearray(8)
    fcntl.ioctl(fd, BLKGETDISKSEQ, buffer, True)
    return struct.unpack("=Q", buffer)[0]


def is_bound(fd: int) -> bool:
    try:
        fcntl.ioctl(fd, LOOP_GET_STATUS64, bytearray(232), True)
        return True
    except OSError as error:
        if error.errno == errno.ENXIO:
            return False
        raise


def _existing_loops() -> set[int]:
    return {int(name[4:]) for name in os.listdir("/sys/block") if name.startswith("loop") and name[4:].isdigit()}


def claim_free_loop() -> tuple[int, int, bool]:
    """(exclusive fd of an unbound loop device, its index, whether this call created it)."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for attempt in range(100):
            before = _existing_loops()
            try:
                index = fcntl.ioctl(control, LOOP_CTL_GET_FREE if attempt == 0 else LOOP_CTL_ADD, -1)
            except OSError as error:
                if error.errno in (errno.EEXIST, errno.EBUSY, errno.EINTR):
                    continue
                raise
            created = attempt > 0 or index not in before
            try:
                fd = os.open(f"/dev/loop{index}", os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
            except OSError as error:
                if error.errno in (errno.EBUSY, errno.ENOENT, errno.ENXIO):
                    time.sleep(0.001 * (1 + attempt % 10))
                    continue
                raise
            if not is_bound(fd):
                return fd, index, created
            os.close(fd)  # bound between LOOP_CTL_GET_FREE and our open: not ours
        raise OSError(errno.EBUSY, "could not claim a free loop device in 100 attempts")
    finally:
        os.close(control)


def remove_loop(index: int) -> None:
    """LOOP_CTL_REMOVE, retried briefly (the kernel says EBUSY while a close is in flight)."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(50):
            try:
                fcntl.ioctl(control, LOOP_CTL_REMOVE, index)
                return
            except OSError as error:
                if error.errno == errno.ENODEV:
                    return
                if error.errno != errno.EBUSY:
                    raise
                time.sleep(0.02)
    finally:
        os.close(control)


def loop_configure(loop_fd: int, backing_fd: int, flags: int) -> None:
    info = bytearray(232)
    struct.pack_into("=I", info, 52, flags)  # loop_info64.lo_flags
    config = struct.pack("=II", backing_fd, 0) + bytes(info) + bytes(64)
    fcntl.ioctl(loop_fd, LOOP_CONFIGURE, config)


class LoopDevice:
    """One loop device this process claimed, attached to an image it created."""

    def __init__(self, size_mib: int = 8, partition_sectors: list[int] | None = None, partscan: bool = True,
                 add_partitions: bool = True, read_only: bool = False, dir_name_pad: int = 0) -> None:
        self.partscan = partscan
        self.read_only = read_only
        # A long directory name makes every Device's loop/backing_file long (list tests).
        self.dir = tempfile.mkdtemp(prefix="diskseqd-pyloop-" + "x" * dir_name_pad)
        self.holder = -1
        self.partitions_added = False
        self.generation = 0
        self.created = False
        self.image: Image
        self.diskseq = 0
        fd, self.index, self.created = claim_free_loop()
        try:
            self._attach(fd, size_mib, partition_sectors, add_partitions)
        except BaseException:
            self.cleanup()
            raise

    @property
    def name(self) -> str:
        return f"loop{self.index}"

    @property
    def dev_path(self) -> str:
        return f"/dev/loop{self.index}"

    def _attach(self, exclusive_fd: int, size_mib: int, partition_sectors: list[int] | None, add_partitions: bool) -> None:
        try:
            self.image = create_image(os.path.join(self.dir, f"image-{self.generation}.img"), size_mib, partition_sectors)
            self.generation += 1
            backing = os.open(self.image.path, os.O_RDONLY if self.read_only else os.O_RDWR)
            try:
                flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_PARTSCAN if self.partscan else 0)
                loop_configure(exclusive_fd, backing, flags | (LO_FLAGS_READ_ONLY if self.read_only else 0))
            finally:
                os.close(backing)
            self.holder = os.open(self.dev_path, os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(exclusive_fd)
        self.diskseq = blk_diskseq(self.holder)
        with open(f"/sys/block/{self.name}/diskseq") as file:
            assert int(file.read()) == self.diskseq
        if self.image.partitions and add_partitions:
            self.add_partitions()

    def add_partitions(self) -> None:
        self.partitions_added = True
        subprocess.run(["partx", "--add", self.dev_path], check=True, capture_output=True)

    def detach(self, wait_s: float = 5.0) -> None:
        """Deletes BLKPG partitions, LOOP_CLR_FD, closes the holder, waits until unbound."""
        if self.holder < 0:
            return
        if self.partitions_added:
            subprocess.run(["partx", "--delete", self.dev_path], check=False, capture_output=True)
            self.partitions_added = False
        try:
            fcntl.ioctl(self.holder, LOOP_CLR_FD, 0)
        finally:
            os.close(self.holder)
            self.holder = -1
        deadline = time.monotonic() + wait_s
        while os.path.exists(f"/sys/block/{self.name}/loop/backing_file"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} still bound {wait_s} s after detach (an fd on it is open)")
            time.sleep(0.005)

    def reattach(self, size_mib: int = 8, partition_sectors: list[int] | None = None) -> None:
        """Same name, new disk instance: detach, re-claim O_EXCL, attach a new image."""
        old = self.diskseq
        self.detach()
        fd = os.open(self.dev_path, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)  # EBUSY: someone else took it
        if is_bound(fd):
            os.close(fd)
            raise RuntimeError(f"{self.name} was bound by another process right after our detach")
        self._attach(fd, size_mib, partition_sectors, True)
        assert self.diskseq > old

    def cleanup(self) -> None:
        """Detaches (best effort), removes the device if we created it, removes the files."""
        try:
            if self.holder >= 0:
                try:
                    self.detach()
                except Exception as error:  # still clean the rest
                    print(f"loop cleanup: {self.name}: {error}")
            if self.created:
                try:
                    remove_loop(self.index)
                except OSError as error:
                    print(f"loop cleanup: LOOP_CTL_REMOVE {self.name}: {error}")
                self.created = False
        finally:
            subprocess.run(["rm", "-rf", self.dir], check=False)
