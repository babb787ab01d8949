"""Backing files with known content: a sparse file with a random marker at offset 0 and,
optionally, a GPT (sfdisk) whose partitions each start with their own marker."""
from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field

MIB = 1024 * 1024
SECTOR = 512
MARKER_BYTES = 32


def make_marker(tag: str) -> bytes:
    """`tag:` then random hex, MARKER_BYTES long; unique within its first 16 bytes."""
    return (f"{tag}:" + secrets.token_hex(MARKER_BYTES)).encode("ascii")[:MARKER_BYTES]


@dataclass
class Partition:
    number: int
    start_bytes: int
    size_bytes: int
    marker: bytes


@dataclass
class Image:
    path: str
    size_bytes: int
    disk_marker: bytes
    partitions: list[Partition] = field(default_factory=list)


def create_image(path: str, size_mib: int = 8, partition_sectors: list[int] | None = None) -> Image:
    """A sparse image; with `partition_sectors`, a GPT with partitions of those sizes (in
    512-byte sectors) from 1 MiB on, packed, each starting with a marker."""
    size = size_mib * MIB
    partitions: list[Partition] = []
    start = MIB
    for i, sectors in enumerate(partition_sectors or []):
        partitions.append(Partition(i + 1, start, sectors * SECTOR, make_marker(f"P{i + 1}")))
        start += sectors * SECTOR
    if partitions and start + MIB > size:
        raise ValueError("partitions do not fit in the image")
    with open(path, "wb") as file:
        file.truncate(size)
    os.chmod(path, 0o600)
    if partitions:
        lines = ["label: gpt"]
        if len(partitions) > 128:
            lines.append(f"table-length: {len(partitions)}")
        lines += [f"start={p.start_bytes // SECTOR}, size={p.size_bytes // SECTOR}, "
                  "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4" for p in partitions]
        subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path],
                       input="\n".join(lines) + "\n", text=True, check=True, capture_output=True)
    disk_marker = make_marker("D")
    with open(path, "r+b") as file:
        file.seek(0)
        file.write(disk_marker)
        for p in partitions:
            file.seek(p.start_bytes)
            file.write(p.marker)
    return Image(path, size, disk_marker, partitions)


def read_marker(fd: int, offset: int = 0) -> bytes:
    """MARKER_BYTES at `offset` through `fd` (pread)."""
    return os.pread(fd, MARKER_BYTES, offset)
