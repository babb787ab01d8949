"""Listing through the real daemon, including a DeviceList too big for one packet: 800 real
partitions of four loop devices (BLKPG through partx; about 90 bytes each on the wire) come
in several packets that the client joins."""
from __future__ import annotations


import diskseqd
from diskseqd import _packets, _wire


def test_list_disks_and_partitions(daemon, loop):
    with diskseqd.connect(daemon.socket_path) as client:
        disks = client.list()
        assert loop.name in {d.name for d in disks}
        assert all(d.partition == 0 for d in disks)
        everything = {d.name: d for d in client.list(include_partitions=True)}
        disk = everything[loop.name]
        assert (disk.diskseq, disk.driver, disk.size_bytes) == (loop.diskseq, "loop", loop.image.size_bytes)
        assert disk.attributes["loop/backing_file"] == loop.image.path
        part = everything[f"{loop.name}p2"]
        assert (part.diskseq, part.partition) == (loop.diskseq, 2)
        assert part.size_bytes == loop.image.partitions[1].size_bytes
        assert part.attributes["partition"] == "2"


def raw_list_packets(socket_path: str) -> list:
    """The list's packets as the daemon sent them (the client joins them; this counts them)."""
    sock = _packets.connect_socket(socket_path, blocking=True)
    try:
        sock.send(_wire.prepare_list(True).encode(77))
        responses = []
        while True:
            packet = _packets.receive_packet(sock)
            assert packet is not None and not packet.fds and not packet.truncated
            response = _wire.decode_response(packet.data)
            responses.append(response)
            if not response.devices.more:
                return responses
    finally:
        sock.close()


PARTITIONS = 200
LOOPS = 4


def test_a_list_split_over_several_packets_is_joined(daemon, make_loop):
    loops = [make_loop(size_mib=16, partition_sectors=[128] * PARTITIONS) for _ in range(LOOPS)]
    responses = raw_list_packets(daemon.socket_path)
    sizes = [len(r.SerializeToString()) for r in responses]
    assert len(responses) >= 2, f"the list fitted one packet ({sizes}): the test needs more devices"
    assert max(sizes) <= diskseqd.MAX_RESPONSE_BYTES
    assert {r.id for r in responses} == {77}
    assert [r.devices.more for r in responses] == [True] * (len(responses) - 1) + [False]
    from_packets = {(d.diskseq, d.partition) for r in responses for d in r.devices.devices}
    with diskseqd.connect(daemon.socket_path) as client:
        joined = client.list(include_partitions=True)
    keys = [(d.diskseq, d.partition) for d in joined]
    assert len(keys) == len(set(keys)), "a device came twice"
    for loop in loops:
        mine = {(d.partition, d.name) for d in joined if d.diskseq == loop.diskseq}
        assert mine == {(0, loop.name)} | {(n, f"{loop.name}p{n}") for n in range(1, PARTITIONS + 1)}
        # The same devices the packets held (other tests' devices may come and go meanwhile).
        assert {k for k in keys if k[0] == loop.diskseq} == {k for k in from_packets if k[0] == loop.diskseq}
