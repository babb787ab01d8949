"""A daemon that dies mid-request: every waiting request fails with a ConnectionError
subclass, later requests fail at once, and the client holds no fd afterwards."""
from __future__ import annotations

import asyncio

import pytest

import diskseqd
from conftest import fd_baseline, fd_count, open_fds


def test_sync_client_when_the_daemon_dies(make_daemon, make_loop):
    daemon = make_daemon()
    loop = make_loop(partition_sectors=[2048], add_partitions=False)
    baseline = fd_baseline()
    client = diskseqd.connect(daemon.socket_path)
    waiting = [client.submit_open(loop.diskseq, partition=1, wait_ms=60_000) for _ in range(3)]
    watch = client.watch()
    assert watch.read(timeout=10) is not None
    client.hello()
    daemon.kill()
    for pending in waiting:
        with pytest.raises(diskseqd.DiskseqConnectionError) as info:
            pending.result(10)
        assert isinstance(info.value, ConnectionError)
    with pytest.raises(ConnectionError):
        for _ in watch:
            pass
    with pytest.raises(diskseqd.DiskseqConnectionError):
        client.list()
    client.close()
    assert fd_count() == baseline, open_fds()


def test_aio_client_when_the_daemon_dies(make_daemon, make_loop):
    daemon = make_daemon()
    loop = make_loop(partition_sectors=[2048], add_partitions=False)

    async def main():
        client = await diskseqd.aio.connect(daemon.socket_path)
        waiting = [asyncio.ensure_future(client.open(loop.diskseq, partition=1, wait_ms=60_000)) for _ in range(3)]
        await client.hello()
        await asyncio.to_thread(daemon.kill)
        for task in waiting:
            with pytest.raises(diskseqd.DiskseqConnectionError):
                await asyncio.wait_for(task, 10)
        assert client.closed
        with pytest.raises(ConnectionError):
            await client.list()
        await client.close()
    baseline = fd_baseline()
    asyncio.run(main())
    assert fd_count() == baseline, open_fds()
