"""The asyncio client against the real daemon: pipelining, cancellation (the late fd is
closed on arrival), timeouts, watch, and this process's fds."""
from __future__ import annotations

import asyncio

import pytest

import diskseqd
from conftest import fd_baseline, fd_count, open_fds
from support.image import read_marker


def run(coroutine):
    return asyncio.run(coroutine)


def test_open_list_hello(daemon, loop):
    async def main():
        client = await diskseqd.aio.connect(daemon.socket_path)
        try:
            hello, listed, *opened = await asyncio.gather(
                client.hello("aio"), client.list(include_partitions=True),
                *(client.open(loop.diskseq, partition=n % 3) for n in range(12)))
            assert hello.protocol_version == 1
            assert {loop.name, f"{loop.name}p2"} <= {d.name for d in listed}
            for n, o in enumerate(opened):
                with o:
                    marker = loop.image.disk_marker if n % 3 == 0 else loop.image.partitions[n % 3 - 1].marker
                    assert read_marker(o.fd) == marker
            with pytest.raises(diskseqd.DiskseqError) as info:
                await client.open(loop.diskseq, expect={"ro": "1"})
            assert info.value.code == "EXPECTATION_FAILED"
            with pytest.raises(diskseqd.ArgumentError):
                await client.open(0)
        finally:
            await client.close()
        assert client.closed
    baseline = fd_baseline()
    run(main())
    assert fd_count() == baseline, open_fds()


async def _late_fd_after(daemon, loop, give_up) -> None:
    """An open waits for a partition; `give_up` abandons it; then the partition appears and
    the daemon delivers the fd anyway, for an id the client has forgotten."""
    async with await diskseqd.aio.connect(daemon.socket_path) as client:
        await client.hello()
        baseline = fd_baseline()
        task = asyncio.ensure_future(client.open(loop.diskseq, partition=1, wait_ms=20_000))
        await client.hello()  # the open has reached the daemon and waits there
        await give_up(task)
        assert not daemon.audits() or all(a.get("op") != "open" for a in daemon.audits())
        loop.add_partitions()
        opens = await asyncio.to_thread(daemon.wait_for_audits, 1, "open", 20)
        assert opens[-1]["decision"] == "allow"
        await client.hello()  # answered after the Opened: the late packet has been handled
        assert fd_count() == baseline, open_fds()
        assert not client.closed


def test_a_cancelled_open_closes_the_fd_that_arrives_later(daemon, make_loop):
    loop = make_loop(partition_sectors=[2048], add_partitions=False)

    async def cancel(task):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run(_late_fd_after(daemon, loop, cancel))


def test_a_timed_out_open_closes_the_fd_that_arrives_later(daemon, make_loop):
    loop = make_loop(partition_sectors=[2048], add_partitions=False)

    async def time_out(task):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(task, 0.05)
    run(_late_fd_after(daemon, loop, time_out))


def test_sync_timeout_closes_the_fd_that_arrives_later(daemon, make_loop):
    loop = make_loop(partition_sectors=[2048], add_partitions=False)
    with diskseqd.connect(daemon.socket_path) as client:
        client.hello()
        baseline = fd_baseline()
        with pytest.raises(TimeoutError):
            client.open(loop.diskseq, partition=1, wait_ms=20_000, timeout=0.1)
        loop.add_partitions()
        assert daemon.wait_for_audits(1, "open", 20)[-1]["decision"] == "allow"
        client.hello()
        assert fd_count() == baseline, open_fds()


def test_aio_watch(daemon, make_loop):
    first = make_loop()

    async def main():
        async with await diskseqd.aio.connect(daemon.socket_path) as client:
            async with client.watch() as watch:
                seen = set()
                async for event in watch:
                    if event.kind == "synced":
                        break
                    seen.add((event.device.diskseq, event.device.name))
                assert (first.diskseq, first.name) in seen
                second = await asyncio.to_thread(make_loop)
                async with asyncio.timeout(10):
                    async for event in watch:
                        if event.kind == "added" and event.device.diskseq == second.diskseq:
                            assert event.device.name == second.name
                            break
            assert watch.closed and await watch.read() is None
            ended = client.watch()
            await client.close()
            assert ended.closed
    baseline = fd_baseline()
    run(main())
    assert fd_count() == baseline + 1, open_fds()  # + the second loop device's holder fd


def test_many_in_flight_from_one_task(daemon, loop):
    async def main():
        async with await diskseqd.aio.connect(daemon.socket_path) as client:
            opened = await asyncio.gather(*(client.open(loop.diskseq) for _ in range(300)))
            assert len({o.fd for o in opened}) == 300
            for o in opened:
                o.close()
    baseline = fd_baseline()
    run(main())
    assert fd_count() == baseline, open_fds()
