"""The client against a scripted fake daemon, with real fds: its own re-check of every
delivered fd (STALE for another instance, another partition, an unbound loop, not a block
device), protocol violations, out-of-order and split answers, and fd accounting on every
one of those paths."""
from __future__ import annotations

import os

import pytest

import diskseqd
from conftest import fd_baseline, fd_count, open_fds
from support.fake_daemon import FakeDaemon, device_of_fd, wire_device
from support.loopdev import claim_free_loop


@pytest.fixture
def fake():
    daemon = FakeDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def session(fake):
    client = diskseqd.connect(fake.socket_path)
    connection = fake.accept()
    try:
        yield client, connection
    finally:
        client.close()


def answer_open(client, connection, fd, device, **open_args):
    pending = client.submit_open(**open_args)
    request = connection.next_request()
    connection.respond(request.id, [fd], opened={"device": device})
    return pending


def expect_stale(pending, fragment):
    with pytest.raises(diskseqd.DiskseqError) as info:
        pending.result(5)
    assert info.value.code == "STALE", info.value
    assert fragment in info.value.message


def test_an_fd_of_the_next_instance_is_stale_and_closed(root, session, make_loop):
    client, connection = session
    loop = make_loop()
    old = loop.diskseq
    loop.reattach()
    fd = os.open(loop.dev_path, os.O_RDONLY)
    baseline = fd_baseline()
    try:
        pending = answer_open(client, connection, fd, wire_device(old, 0, *device_of_fd(fd), loop.name), diskseq=old)
        expect_stale(pending, f"reports diskseq {loop.diskseq}, not the requested diskseq {old}")
        assert fd_count() == baseline, open_fds()
    finally:
        os.close(fd)


def test_a_whole_disk_fd_for_a_partition_request_is_stale(root, session, make_loop):
    client, connection = session
    loop = make_loop(partition_sectors=[2048])
    fd = os.open(loop.dev_path, os.O_RDONLY)
    baseline = fd_baseline()
    try:
        # The diskseq matches (a partition fd reports its parent's): only the partition tells.
        pending = answer_open(client, connection, fd, wire_device(loop.diskseq, 1, *device_of_fd(fd)),
                              diskseq=loop.diskseq, partition=1)
        expect_stale(pending, "is the whole disk")
        assert fd_count() == baseline, open_fds()
    finally:
        os.close(fd)


def test_a_partition_fd_for_a_whole_disk_request_is_stale(root, session, make_loop):
    client, connection = session
    loop = make_loop(partition_sectors=[2048, 2048])
    fd = os.open(f"{loop.dev_path}p2", os.O_RDONLY)
    baseline = fd_baseline()
    try:
        pending = answer_open(client, connection, fd, wire_device(loop.diskseq, 0, *device_of_fd(fd)), diskseq=loop.diskseq)
        expect_stale(pending, "is partition 2")
        pending = answer_open(client, connection, fd, wire_device(loop.diskseq, 1, *device_of_fd(fd)),
                              diskseq=loop.diskseq, partition=1)
        expect_stale(pending, "is partition 2")
        assert fd_count() == baseline, open_fds()
        # The right partition passes.
        pending = answer_open(client, connection, fd, wire_device(loop.diskseq, 2, *device_of_fd(fd)),
                              diskseq=loop.diskseq, partition=2)
        with pending.result(5) as opened:
            assert opened.device.partition == 2
    finally:
        os.close(fd)


def test_an_fd_of_an_unbound_loop_is_stale(root, session):
    client, connection = session
    exclusive, index, created = claim_free_loop()
    try:
        with open(f"/sys/block/loop{index}/diskseq") as file:
            diskseq = int(file.read())
        baseline = fd_baseline()
        pending = answer_open(client, connection, exclusive, wire_device(diskseq, 0, *device_of_fd(exclusive)), diskseq=diskseq)
        expect_stale(pending, "no longer bound")
        assert fd_count() == baseline, open_fds()
    finally:
        os.close(exclusive)
        if created:
            from support.loopdev import remove_loop
            remove_loop(index)


def test_a_non_block_fd_is_stale(session):
    client, connection = session
    fd = os.open("/dev/null", os.O_RDONLY)
    baseline = fd_baseline()
    try:
        pending = answer_open(client, connection, fd, wire_device(12), diskseq=12)
        expect_stale(pending, "not a block device")
        assert fd_count() == baseline, open_fds()
    finally:
        os.close(fd)


def test_protocol_violations_close_every_fd_and_keep_the_connection(session):
    client, connection = session
    null = os.open("/dev/null", os.O_RDONLY)
    baseline = fd_baseline()
    try:
        no_fd = client.submit_open(1)
        two_fds = client.submit_open(2)
        error_with_fd = client.submit_open(3)
        list_with_fd = client.submit_list()
        wrong_instance = client.submit_open(4)
        r1, r2, r3, r4, r5 = (connection.next_request() for _ in range(5))
        connection.respond(r1.id, opened={"device": wire_device(1)})
        connection.respond(r2.id, [null, null], opened={"device": wire_device(2)})
        connection.respond(r3.id, [null], error={"code": 4, "message": "busy"})
        connection.respond(r4.id, [null], devices={"devices": []})
        connection.respond(r5.id, [null], opened={"device": wire_device(5)})
        connection.respond(999, [null], opened={"device": wire_device(1)})  # nobody asked
        for pending, fragment in ((no_fd, "0 fds"), (two_fds, "2 fds"), (error_with_fd, "fd(s) arrived"),
                                  (list_with_fd, "fd(s) arrived"), (wrong_instance, "Opened describes diskseq 5")):
            with pytest.raises(diskseqd.DiskseqError) as info:
                pending.result(5)
            assert info.value.code == "INTERNAL" and fragment in info.value.message, info.value
        hello = client.submit_hello()
        connection.respond(connection.next_request().id, hello={"protocol_version": 1, "server_version": "fake"})
        assert hello.result(5).server_version == "fake"
        assert fd_count() == baseline, open_fds()
        assert not client.closed
    finally:
        os.close(null)


@pytest.mark.parametrize("packet", [b"\xff\xff\xff", b"\x08" + b"\x01" * 70000], ids=["undecodable", "truncated"])
def test_an_undecodable_or_oversized_packet_costs_the_connection(session, packet):
    client, connection = session
    null = os.open("/dev/null", os.O_RDONLY)
    baseline = fd_baseline()
    try:
        pending = client.submit_list()
        connection.next_request()
        connection.send_raw(packet, [null])
        with pytest.raises(diskseqd.DiskseqError) as info:
            pending.result(5)
        assert info.value.code == "INTERNAL"
        assert client.closed
        with pytest.raises(diskseqd.DiskseqError):
            client.list()
        assert fd_count() == baseline - 1, open_fds()  # the client's socket is gone too
    finally:
        os.close(null)


def test_out_of_order_answers_and_a_split_list(session):
    client, connection = session
    listing = client.submit_list(include_partitions=True)
    hello = client.submit_hello("order")
    opening = client.submit_open(7, partition=2, access="read-write", wait_ms=5, expect={"ro": "0"})
    r_list, r_hello, r_open = (connection.next_request() for _ in range(3))
    assert r_list.list.include_partitions and r_hello.hello.client_name == "order"
    assert (r_open.open.diskseq, r_open.open.partition, r_open.open.access, r_open.open.wait_ms) == (7, 2, 1, 5)
    assert dict(r_open.open.expect) == {"ro": "0"}
    assert len({r_list.id, r_hello.id, r_open.id}) == 3
    connection.respond(r_open.id, error={"code": 1, "message": "no such disk", "os_errno": 2})
    connection.respond(r_list.id, devices={"devices": [wire_device(1), wire_device(1, 1)], "more": True})
    connection.respond(r_hello.id, hello={"protocol_version": 1, "features": ["watch"]})
    connection.respond(r_list.id, devices={"devices": [], "more": True})
    connection.respond(r_list.id, devices={"devices": [wire_device(2, attributes={"ro": "0"})]})
    with pytest.raises(diskseqd.DiskseqError) as info:
        opening.result(5)
    assert (info.value.code, info.value.message, info.value.os_errno) == ("NOT_FOUND", "no such disk", 2)
    assert hello.result(5).features == ("watch",)
    devices = listing.result(5)
    assert [(d.diskseq, d.partition) for d in devices] == [(1, 0), (1, 1), (2, 0)]
    assert devices[2].attributes == {"ro": "0"}


def test_a_late_fd_for_a_timed_out_request_is_closed(session):
    client, connection = session
    null = os.open("/dev/null", os.O_RDONLY)
    baseline = fd_baseline()
    try:
        pending = client.submit_open(9)
        request = connection.next_request()
        with pytest.raises(TimeoutError):
            pending.result(0.05)
        connection.respond(request.id, [null], opened={"device": wire_device(9)})
        hello = client.submit_hello()
        connection.respond(connection.next_request().id, hello={"protocol_version": 1})
        hello.result(5)
        assert fd_count() == baseline, open_fds()
    finally:
        os.close(null)


def test_the_daemon_closing_fails_what_waits(session):
    client, connection = session
    baseline = fd_baseline()
    pending = [client.submit_open(5), client.submit_list()]
    connection.next_request()
    connection.close()
    for p in pending:
        with pytest.raises(diskseqd.DiskseqConnectionError) as info:
            p.result(5)
        # Unread requests make the close a reset.
        assert info.value.code in ("CONNECTION_CLOSED", "ECONNRESET") and isinstance(info.value, ConnectionError)
    assert fd_count() == baseline - 2, open_fds()  # the client's socket and the fake's end
