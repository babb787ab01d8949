"""Typed errors from the real daemon, and the arguments the client refuses before sending."""
from __future__ import annotations

import errno
import os

import pytest

import diskseqd
from conftest import fd_baseline, fd_count, open_fds
from support.peer import NOBODY, run_as


def test_not_found_for_a_detached_instance(daemon, make_loop):
    loop = make_loop()
    gone = loop.diskseq
    loop.detach()
    with diskseqd.connect(daemon.socket_path) as client:
        with pytest.raises(diskseqd.DiskseqError) as info:
            client.open(gone)
        assert info.value.code == "NOT_FOUND"
        assert info.value.wire_code == 1
        assert info.value.message


def test_old_diskseq_after_reattach_never_gives_the_new_device(daemon, make_loop):
    loop = make_loop(partition_sectors=[2048])
    old = loop.diskseq
    with diskseqd.connect(daemon.socket_path) as client:
        client.open(old).close()  # the daemon has indexed the old instance
        loop.reattach(partition_sectors=[2048])
        for partition in (0, 1):
            with pytest.raises(diskseqd.DiskseqError) as info:
                client.open(old, partition)
            # The daemon answers NOT_FOUND for an instance that is gone (STALE only when a
            # device still listed under X verifies wrong twice).
            assert info.value.code == "NOT_FOUND"
        with client.open(loop.diskseq) as fresh:
            assert os.pread(fresh.fd, 32, 0) == loop.image.disk_marker


def test_permission_denied_for_an_unprivileged_peer(make_daemon, make_loop):
    daemon = make_daemon(world_accessible=True)
    loop = make_loop()
    code = f"""
import json, diskseqd
try:
    with diskseqd.connect() as client:
        client.open({loop.diskseq})
    print(json.dumps({{"outcome": "opened"}}))
except diskseqd.DiskseqError as e:
    print(json.dumps({{"outcome": "refused", "code": e.code, "message": e.message, "os_errno": e.os_errno}}))
"""
    report = run_as(NOBODY, NOBODY, code, env={"DISKSEQD_SOCKET": daemon.socket_path})
    assert report["outcome"] == "refused"
    assert report["code"] == "PERMISSION_DENIED"
    audits = [a for a in daemon.audits() if a.get("op") == "open"]
    assert audits and audits[-1]["peer"]["uid"] == NOBODY and audits[-1]["decision"] == "deny"


def test_expectation_failed(daemon, loop):
    with diskseqd.connect(daemon.socket_path) as client:
        with pytest.raises(diskseqd.DiskseqError) as info:
            client.open(loop.diskseq, expect={"loop/backing_file": "/srv/some-other.img"})
        assert info.value.code == "EXPECTATION_FAILED"
        assert "loop/backing_file" in info.value.message


def test_invalid_argument_from_the_daemon(daemon, loop):
    # Which attribute keys exist is the daemon's to say, so newer keys keep working.
    with diskseqd.connect(daemon.socket_path) as client:
        with pytest.raises(diskseqd.DiskseqError) as info:
            client.open(loop.diskseq, expect={"../../../etc/shadow": "x"})
        assert info.value.code == "INVALID_ARGUMENT"
        assert client.hello().protocol_version == 1  # an operational failure: the connection goes on


def test_timeout_from_the_daemon(daemon, make_loop):
    loop = make_loop(partition_sectors=[2048], add_partitions=False)
    with diskseqd.connect(daemon.socket_path) as client:
        with pytest.raises(diskseqd.DiskseqError) as info:
            client.open(loop.diskseq, partition=1, wait_ms=200)
        assert info.value.code == "TIMEOUT"


BAD_ARGUMENTS = [
    ({"diskseq": 0}, "diskseq"),
    ({"diskseq": -1}, "diskseq"),
    ({"diskseq": 2 ** 64}, "diskseq"),
    ({"diskseq": 1.0}, "diskseq"),
    ({"diskseq": "42"}, "diskseq"),
    ({"diskseq": True}, "diskseq"),
    ({"diskseq": None}, "diskseq"),
    ({"diskseq": 5, "partition": -1}, "partition"),
    ({"diskseq": 5, "partition": 2 ** 32}, "partition"),
    ({"diskseq": 5, "partition": False}, "partition"),
    ({"diskseq": 5, "access": "rw"}, "access"),
    ({"diskseq": 5, "access": 1}, "access"),
    ({"diskseq": 5, "exclusive": 1}, "exclusive"),
    ({"diskseq": 5, "direct": "yes"}, "direct"),
    ({"diskseq": 5, "wait_ms": -1}, "wait_ms"),
    ({"diskseq": 5, "wait_ms": 0.5}, "wait_ms"),
    ({"diskseq": 5, "expect": {"size": 1}}, "expect"),
    ({"diskseq": 5, "expect": [("size", "1")]}, "expect"),
    ({"diskseq": 5, "expect": {"size": "1" * 5000}}, "4096"),
]


@pytest.mark.parametrize(("arguments", "mentions"), BAD_ARGUMENTS)
def test_bad_arguments_fail_locally_before_anything_is_sent(daemon, arguments, mentions):
    with diskseqd.connect(daemon.socket_path) as client:
        with pytest.raises(diskseqd.ArgumentError) as info:
            client.open(**arguments)
        assert mentions in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
        # Nothing reached the daemon, and the connection is intact (an oversized request
        # would have cost it).
        assert client.hello().protocol_version == 1
        audits = daemon.wait_for_audits(1, "hello")
        assert [a.get("op") for a in daemon.audits()] == ["hello"], audits


def test_unreachable_daemon_is_a_connection_error(tmp_path):
    with pytest.raises(diskseqd.DiskseqConnectionError) as info:
        diskseqd.connect(tmp_path / "absent.sock")
    assert isinstance(info.value, ConnectionError)
    assert info.value.code == "ENOENT" and info.value.errno == errno.ENOENT
    assert str(tmp_path / "absent.sock") in str(info.value)


def test_socket_path_from_the_environment(daemon, monkeypatch):
    monkeypatch.setenv("DISKSEQD_SOCKET", daemon.socket_path)
    with diskseqd.connect() as client:
        assert client.socket_path == daemon.socket_path
        assert client.hello("pytest").protocol_version == 1
    monkeypatch.delenv("DISKSEQD_SOCKET")
    assert diskseqd.resolve_socket_path() == "/run/diskseqd.sock"
    assert diskseqd.resolve_socket_path("/x.sock") == "/x.sock"


def test_closed_client_raises_connection_closed(daemon):
    baseline = fd_baseline()
    client = diskseqd.connect(daemon.socket_path)
    client.close()
    client.close()
    with pytest.raises(diskseqd.DiskseqConnectionError) as info:
        client.list()
    assert info.value.code == "CONNECTION_CLOSED"
    assert fd_count() == baseline, open_fds()
