"""wait_ms for a partition that appears after the request, and the watch stream (sync)."""
from __future__ import annotations

import time

import pytest

import diskseqd
from conftest import fd_baseline, fd_count, open_fds
from support.image import read_marker


def test_wait_for_a_partition_added_after_the_request(daemon, make_loop):
    loop = make_loop(partition_sectors=[2048, 2048], add_partitions=False)
    with diskseqd.connect(daemon.socket_path) as client:
        waiting = [client.submit_open(loop.diskseq, partition=n, wait_ms=20_000) for n in (1, 2)]
        client.hello()  # both requests have reached the daemon
        assert not any(p.done() for p in waiting)
        loop.add_partitions()
        for n, pending in zip((1, 2), waiting):
            with pending.result(20) as opened:
                assert opened.device.partition == n
                assert read_marker(opened.fd) == loop.image.partitions[n - 1].marker


def next_event(watch: diskseqd.Watch, predicate, timeout: float = 10.0) -> diskseqd.WatchEvent:
    deadline = time.monotonic() + timeout
    while True:
        event = watch.read(timeout=max(0.01, deadline - time.monotonic()))
        assert event is not None
        if predicate(event):
            return event


def test_watch_snapshot_then_live_events(daemon, make_loop):
    first = make_loop()
    with diskseqd.connect(daemon.socket_path) as client:
        client.hello()  # the daemon has accepted this connection
        baseline_daemon = daemon.fd_count()
        with client.watch() as watch:
            snapshot = []
            for event in watch:
                if event.kind == "synced":
                    assert event.device is None
                    break
                assert event.kind == "added"
                snapshot.append(event.device)
            assert (first.diskseq, first.name) in {(d.diskseq, d.name) for d in snapshot}

            second = make_loop(partition_sectors=[2048])
            added = next_event(watch, lambda e: e.kind == "added" and e.device.diskseq == second.diskseq
                               and e.device.partition == 0)
            assert added.device.name == second.name
            part = next_event(watch, lambda e: e.kind == "added" and e.device.diskseq == second.diskseq
                              and e.device.partition == 1)
            assert part.device.name == f"{second.name}p1"
            gone = second.diskseq
            second.detach()
            removed = next_event(watch, lambda e: e.kind == "removed" and e.device.diskseq == gone
                                 and e.device.partition == 0)
            assert removed.device.name == second.name
            # A timeout leaves the watch running. The watch sees every device on the host,
            # and other tests attach and detach theirs: read until 50 ms pass without one.
            for _ in range(1000):
                try:
                    watch.read(timeout=0.05)
                except TimeoutError:
                    break
            else:
                pytest.fail("the watch never went 50 ms without an event")
            assert not watch.closed
        assert watch.closed and watch.read() is None
        # The watch's connection is gone on the daemon's side too.
        deadline = time.monotonic() + 5
        while daemon.fd_count() > baseline_daemon and time.monotonic() < deadline:
            time.sleep(0.02)
        assert daemon.fd_count() <= baseline_daemon


def test_client_close_ends_its_watches(daemon):
    baseline = fd_baseline()
    client = diskseqd.connect(daemon.socket_path)
    watch = client.watch()
    assert watch.read(timeout=10) is not None
    client.close()
    assert watch.closed
    assert list(watch) == []
    assert fd_count() == baseline, open_fds()
