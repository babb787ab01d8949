"""The client's own check of every fd the daemon delivers, before the caller sees it.

The daemon verifies on the fd (docs/design.md, open-and-verify); this process checks again
what it can see for itself, in this order: a block device whose device number is the one
the daemon described; the requested partition (sysfs `partition` of that dev_t, absent for
a whole disk: BLKGETDISKSEQ on a partition fd answers with the parent disk's diskseq, so the
diskseq alone cannot tell a disk from its partitions); for a loop device, still bound
(LOOP_GET_STATUS64; an fd opened on an unbound loop is not pinned, so its diskseq means
nothing); and last BLKGETDISKSEQ = the requested diskseq.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from typing import Final

from ._errors import DiskseqError, protocol_error
from ._types import Device

BLKGETDISKSEQ: Final = 0x80081280  # _IOR(0x12, 128, __u64)
LOOP_GET_STATUS64: Final = 0x4C05
_LOOP_INFO64_SIZE: Final = 232  # sizeof(struct loop_info64)
SYSFS_DEV_BLOCK: Final = "/sys/dev/block"


def _sysfs_partition(major: int, minor: int) -> int | None:
    """sysfs `partition` of dev_t major:minor; None for a whole disk."""
    directory = f"{SYSFS_DEV_BLOCK}/{major}:{minor}"
    try:
        with open(f"{directory}/partition", encoding="ascii") as file:
            return int(file.read().strip())
    except FileNotFoundError:
        if not os.path.isdir(directory):
            raise DiskseqError("INTERNAL", f"cannot check the partition of the received fd: {directory} "
                               "does not exist (is sysfs mounted?)") from None
        return None


def recheck_fd(fd: int, diskseq: int, partition: int, device: Device) -> None:
    """Raises DiskseqError unless `fd` is partition `partition` (0: the whole disk) of disk
    instance `diskseq`, as `device` describes it. The caller closes the fd on failure."""
    try:
        st = os.fstat(fd)
    except OSError as error:
        raise DiskseqError("INTERNAL", f"cannot check the received fd: {error}", os_errno=error.errno or 0) from None
    if not stat.S_ISBLK(st.st_mode):
        raise DiskseqError("STALE", f"the received fd is not a block device (diskseq {diskseq} requested)")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if (major, minor) != (device.major, device.minor):
        raise protocol_error(f"the received fd is device {major}:{minor}, Opened describes {device.major}:{device.minor}")
    # An open partition cannot be deleted (BLKPG gives EBUSY), so this read stays true for the fd.
    actual_partition = _sysfs_partition(major, minor)
    if (actual_partition or 0) != partition:
        what = "the whole disk" if actual_partition is None else f"partition {actual_partition}"
        raise DiskseqError("STALE", f"the received fd is {what} ({major}:{minor}), not "
                           f"{'the whole disk' if partition == 0 else f'partition {partition}'} as requested")
    try:
        fcntl.ioctl(fd, LOOP_GET_STATUS64, bytearray(_LOOP_INFO64_SIZE), True)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise DiskseqError("STALE", f"the received fd is on a loop device that is no longer bound "
                               f"(diskseq {diskseq} requested)") from None
        # ENOTTY, EINVAL ...: not a loop device (nor a partition of one).
    buffer = bytearray(8)
    try:
        fcntl.ioctl(fd, BLKGETDISKSEQ, buffer, True)
    except OSError as error:
        raise DiskseqError("STALE", f"the received fd reports no diskseq ({error.strerror}), not the "
                           f"requested diskseq {diskseq}", os_errno=error.errno or 0) from None
    (actual,) = struct.unpack("=Q", buffer)
    if actual != diskseq:
        raise DiskseqError("STALE", f"the received fd reports diskseq {actual}, not the requested diskseq {diskseq}")
