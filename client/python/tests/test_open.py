"""Opening through the real daemon: the fd is the requested disk instance and partition,
in every access mode, and the client's fds balance."""
from __future__ import annotations

import errno
import os

import pytest

import diskseqd
from conftest import fd_baseline, fd_count, open_fds
from support.image import read_marker
from support.loopdev import blk_diskseq


def test_whole_disk_read_only(daemon, loop):
    with diskseqd.connect(daemon.socket_path) as client:
        with client.open(loop.diskseq) as opened:
            assert read_marker(opened.fd) == loop.image.disk_marker
            assert blk_diskseq(opened.fd) == loop.diskseq
            assert opened.device.diskseq == loop.diskseq
            assert opened.device.partition == 0
            assert opened.device.name == loop.name
            assert opened.device.driver == "loop"
            assert opened.device.size_bytes == loop.image.size_bytes
            assert os.get_inheritable(opened.fd) is False
            assert fcntl_accmode(opened.fd) == os.O_RDONLY
        assert opened.fd == -1


def fcntl_accmode(fd: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


@pytest.mark.parametrize("number", [1, 2])
def test_partition(daemon, loop, number):
    with diskseqd.connect(daemon.socket_path) as client:
        with client.open(loop.diskseq, partition=number) as opened:
            assert read_marker(opened.fd) == loop.image.partitions[number - 1].marker
            assert opened.device.partition == number
            assert opened.device.name == f"{loop.name}p{number}"


@pytest.mark.parametrize(("access", "mode"), [("read-only", os.O_RDONLY), ("read-write", os.O_RDWR),
                                               ("write-only", os.O_WRONLY)])
def test_access_modes(daemon, loop, access, mode):
    with diskseqd.connect(daemon.socket_path) as client, client.open(loop.diskseq, 1, access) as opened:
        assert fcntl_accmode(opened.fd) == mode
        if access == "read-only":
            with pytest.raises(OSError) as info:
                os.pwrite(opened.fd, b"x", 4096)
            assert info.value.errno == errno.EBADF


def test_flags_reach_the_fd(daemon, loop):
    import fcntl
    with diskseqd.connect(daemon.socket_path) as client:
        with client.open(loop.diskseq, nonblock=True, sync=True, direct=True) as opened:
            flags = fcntl.fcntl(opened.fd, fcntl.F_GETFL)
            assert flags & os.O_NONBLOCK and flags & os.O_SYNC == os.O_SYNC and flags & os.O_DIRECT
        with client.open(loop.diskseq, exclusive=True) as first:
            with pytest.raises(diskseqd.DiskseqError) as info:
                client.open(loop.diskseq, exclusive=True)
            assert info.value.code == "BUSY"
            assert info.value.os_errno == errno.EBUSY
            assert first.fd >= 0


def test_pipelined_opens_from_one_thread(daemon, loop):
    with diskseqd.connect(daemon.socket_path) as client:
        before = fd_baseline()
        pending = [client.submit_open(loop.diskseq, partition=i % 3) for i in range(30)]
        listed = client.submit_list(include_partitions=True)
        opened = [p.result(timeout=10) for p in pending]
        assert {d.name for d in listed.result(10)} >= {loop.name, f"{loop.name}p1", f"{loop.name}p2"}
        assert [o.device.partition for o in opened] == [i % 3 for i in range(30)]
        assert fd_count() == before + 30
        for o in opened:
            o.close()
        assert fd_count() == before, open_fds()


def test_pipelined_opens_from_threads(daemon, loop):
    import threading
    errors: list[BaseException] = []
    with diskseqd.connect(daemon.socket_path) as client:
        before = fd_baseline()

        def worker(partition: int) -> None:
            try:
                for _ in range(40):
                    with client.open(loop.diskseq, partition=partition, timeout=20) as opened:
                        expected = loop.image.disk_marker if partition == 0 else loop.image.partitions[partition - 1].marker
                        assert read_marker(opened.fd) == expected
            except BaseException as error:  # reported below
                errors.append(error)
        threads = [threading.Thread(target=worker, args=(i % 3,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert fd_count() == before, open_fds()


def test_expect_holds(daemon, loop):
    with diskseqd.connect(daemon.socket_path) as client:
        with client.open(loop.diskseq, expect={"loop/backing_file": loop.image.path, "partition": "1"}, partition=1) as o:
            assert o.device.partition == 1
