"""Fixtures for the client's tests against the real daemon and real loop devices.

The root gate matches the TypeScript suite's: without root (or /dev/loop-control) a test
skips with a loud reason, except under CI=true (or CI=1), where it fails.
"""
from __future__ import annotations

import gc
import os
import warnings
from typing import Callable, Iterator

import pytest

from support.daemon import Daemon
from support.loopdev import LoopDevice


def root_unavailable_reason() -> str | None:
    if os.getuid() != 0:
        return f"not running as root (uid {os.getuid()}): loop devices and the daemon need root"
    if not os.access("/dev/loop-control", os.R_OK | os.W_OK):
        return "/dev/loop-control is not usable"
    return None


def in_ci() -> bool:
    return os.environ.get("CI") in ("true", "1")


def require_root() -> None:
    reason = root_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI is set and this test cannot run: {reason}")
    banner = f"SKIPPED (not a pass): {reason}. Run as root, or set CI=true to make this fatal."
    warnings.warn(banner)
    print(f"\n*** {banner} ***\n")
    pytest.skip(banner)


@pytest.fixture
def root() -> None:
    require_root()


@pytest.fixture
def daemon(root: None) -> Iterator[Daemon]:
    d = Daemon()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def make_daemon(root: None) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(**options: object) -> Daemon:
        d = Daemon(**options)  # type: ignore[arg-type]
        started.append(d)
        return d
    try:
        yield make
    finally:
        for d in started:
            d.stop()


@pytest.fixture
def make_loop(root: None) -> Iterator[Callable[..., LoopDevice]]:
    loops: list[LoopDevice] = []

    def make(**options: object) -> LoopDevice:
        loop = LoopDevice(**options)  # type: ignore[arg-type]
        loops.append(loop)
        return loop
    try:
        yield make
    finally:
        for loop in reversed(loops):
            loop.cleanup()


@pytest.fixture
def loop(make_loop: Callable[..., LoopDevice]) -> LoopDevice:
    return make_loop(partition_sectors=[2048, 2048])


def fd_count() -> int:
    """This process's open fds."""
    return len(os.listdir("/proc/self/fd"))


def fd_baseline() -> int:
    """fd_count() after collecting cyclic garbage, so that fds earlier tests left to the
    collector cannot vanish mid-test. Measure the end with fd_count(): a leak that only the
    collector would close then still shows."""
    gc.collect()
    return fd_count()


def open_fds() -> set[str]:
    """This process's fds and their targets (for a leak message)."""
    result = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            result.add(f"{name} -> {os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:
            pass
    return result
