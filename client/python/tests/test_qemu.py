"""QEMU takes the verified fd itself (docs/qemu.md): it adopts it into an fdset and opens
/dev/fdset/N with host_device, using that very fd; no path is reopened. Both routes:
`-add-fd` on the command line through diskseq-open, and QMP `add-fd` with SCM_RIGHTS from
the Python client. QEMU reads the device's marker through the fdset; a stale diskseq never
reaches QEMU. QEMU runs no guest (-M none -S), so no KVM is needed."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import diskseqd
from conftest import in_ci
from support.daemon import CLI_SCRIPT, NODE, shebang_node_flags
from support.qmp import QEMU, QMP, private_dir, qemu_base_args, read_back, start_qemu_with_qmp_pair, wait_for_socket


@pytest.fixture
def qemu_binary(root):
    if QEMU is None:
        reason = "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
        if in_ci():
            pytest.fail(f"CI is set and {reason}")
        pytest.skip(f"SKIPPED (not a pass): {reason}")
    return QEMU


@pytest.fixture
def workdir():
    path = private_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def diskseq_open(socket_path: str, *args: str) -> list[str]:
    return [NODE, *shebang_node_flags(CLI_SCRIPT), str(CLI_SCRIPT), "--socket", socket_path, *args]


def finish(process: subprocess.Popen, qmp: QMP | None) -> str:
    """Quits QEMU and returns its standard output (qemu-io's hexdumps are in it)."""
    try:
        if qmp is not None:
            qmp.execute("quit")
            qmp.close()
        else:
            process.terminate()
        out, _ = process.communicate(timeout=20)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return out


def test_add_fd_on_the_command_line_through_diskseq_open(daemon, loop, qemu_binary, workdir):
    qmp_path = os.path.join(workdir, "qmp.sock")
    command = diskseq_open(daemon.socket_path, "--fd", "3", f"{loop.diskseq}p1", "--",
                           *qemu_base_args(qmp_path),
                           "-add-fd", f"fd=3,set=1,opaque=diskseq:{loop.diskseq}p1",
                           "-blockdev", "driver=host_device,node-name=disk0,filename=/dev/fdset/1,read-only=on")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    qmp = None
    try:
        wait_for_socket(qmp_path, process)
        qmp = QMP.connect(qmp_path)
        fdsets = qmp.execute("query-fdsets")["return"]
        assert [(s["fdset-id"], [f["opaque"] for f in s["fds"]]) for s in fdsets] == [(1, [f"diskseq:{loop.diskseq}p1"])]
        nodes = {n["node-name"]: n for n in qmp.execute("query-named-block-nodes")["return"]}
        assert nodes["disk0"]["drv"] == "host_device" and nodes["disk0"]["ro"] is True
        assert nodes["disk0"]["file"] == "/dev/fdset/1"
        assert qmp.execute("human-monitor-command", **{"command-line": 'qemu-io disk0 "read -v 0 32"'}) == {"return": ""}
    finally:
        out = finish(process, qmp)
    assert read_back(out, 0, 32) == loop.image.partitions[0].marker, out
    assert process.returncode == 0, out


def test_a_stale_diskseq_never_starts_qemu(daemon, make_loop, qemu_binary, workdir):
    loop = make_loop(partition_sectors=[2048])
    old = loop.diskseq
    loop.reattach(partition_sectors=[2048])
    qmp_path = os.path.join(workdir, "qmp.sock")
    done = subprocess.run(diskseq_open(daemon.socket_path, "--fd", "3", str(old), "--", *qemu_base_args(qmp_path),
                                       "-add-fd", "fd=3,set=1",
                                       "-blockdev", "driver=host_device,node-name=disk0,filename=/dev/fdset/1,read-only=on"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 125, done  # diskseq-open's own failure: QEMU never started
    assert "NOT_FOUND" in done.stderr or "STALE" in done.stderr, done.stderr
    assert not os.path.exists(qmp_path), "QEMU ran"


def test_qmp_add_fd_from_the_python_client(daemon, loop, qemu_binary):
    process, qmp = start_qemu_with_qmp_pair()
    try:
        with diskseqd.connect(daemon.socket_path) as client:
            with client.open(loop.diskseq, partition=2) as opened:
                added = qmp.execute("add-fd", fd=opened.fd, **{"fdset-id": 1, "opaque": f"diskseq:{loop.diskseq}p2"})
                assert added["return"]["fdset-id"] == 1, added
            # QEMU holds its own copy: ours is closed, the fdset still has the device.
            with client.open(loop.diskseq, access="read-write") as rw:
                assert "return" in qmp.execute("add-fd", fd=rw.fd, **{"fdset-id": 2, "opaque": "rw"})
                # A read-only fd cannot back a writable node (QEMU matches O_ACCMODE exactly).
                wrong = qmp.execute("blockdev-add", driver="host_device", **{"node-name": "bad", "filename": "/dev/fdset/1"})
                assert "Permission denied" in wrong["error"]["desc"], wrong
        for name, fdset, read_only in (("part2", 1, True), ("disk", 2, False)):
            result = qmp.execute("blockdev-add", driver="host_device",
                                 **{"node-name": name, "filename": f"/dev/fdset/{fdset}", "read-only": read_only})
            assert result == {"return": {}}, result
        hmp = "human-monitor-command"
        assert qmp.execute(hmp, **{"command-line": 'qemu-io part2 "read -v 0 32"'}) == {"return": ""}
        assert qmp.execute(hmp, **{"command-line": 'qemu-io disk "write -P 0x5a 4096 512"'}) == {"return": ""}
        assert qmp.execute(hmp, **{"command-line": 'qemu-io disk "read -v 0 32"'}) == {"return": ""}
    finally:
        out = finish(process, qmp)
    dumps = out.split("read 32/32 bytes at offset 0")
    assert read_back(dumps[0], 0, 32) == loop.image.partitions[1].marker, out
    assert read_back(dumps[1], 0, 32) == loop.image.disk_marker, out
    # QEMU's write went to the device through the read-write fd.
    with open(loop.image.path, "rb") as image:
        assert os.pread(image.fileno(), 512, 4096) == b"\x5a" * 512


def test_qmp_route_a_stale_diskseq_never_reaches_qemu(daemon, make_loop, qemu_binary):
    loop = make_loop()
    old = loop.diskseq
    loop.reattach()
    process, qmp = start_qemu_with_qmp_pair()
    try:
        with diskseqd.connect(daemon.socket_path) as client:
            with pytest.raises(diskseqd.DiskseqError) as info:
                client.open(old)
            assert info.value.code in ("NOT_FOUND", "STALE")
        assert qmp.execute("query-fdsets") == {"return": []}
    finally:
        finish(process, qmp)
