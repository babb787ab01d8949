#!/usr/bin/python3
"""Makes a host with many block devices for the startup benchmark, and always cleans up.

    many-loop-devices.py COUNT [FIRST_INDEX]

Creates COUNT unbound loop devices with LOOP_CTL_ADD (what test churn leaves behind on a
busy host), at indices from FIRST_INDEX (default 100000) upwards, skipping indices that
exist (EEXIST: someone else's device, never touched). Prints "created N" once done, then
waits until standard input ends -- the parent closed it, or died -- or SIGTERM/SIGINT, and
removes exactly the devices it created with LOOP_CTL_REMOVE, in parallel (one removal takes
~40 ms of the kernel's time), and prints "removed N". Anything it could not remove (EBUSY:
someone opened it) is retried for a while, then reported on stderr.
"""
import errno
import fcntl
import os
import signal
import sys
import threading
import time

LOOP_CTL_ADD = 0x4C80
LOOP_CTL_REMOVE = 0x4C81
THREADS = 32


def in_parallel(op, indices):
    """Runs op on every index from THREADS threads, each with its own loop-control fd;
    returns the indices op succeeded for."""
    done = []
    lock = threading.Lock()
    pending = list(indices)

    def worker():
        ctl = os.open('/dev/loop-control', os.O_RDWR | os.O_CLOEXEC)
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    index = pending.pop()
                if op(ctl, index):
                    with lock:
                        done.append(index)
        finally:
            os.close(ctl)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


def add(ctl, index):
    try:
        fcntl.ioctl(ctl, LOOP_CTL_ADD, index)
        return True
    except OSError as e:
        if e.errno == errno.EEXIST:
            return False
        raise


def remove(ctl, index):
    for _ in range(50):
        try:
            fcntl.ioctl(ctl, LOOP_CTL_REMOVE, index)
            return True
        except OSError as e:
            if e.errno == errno.ENODEV:
                return True  # already gone
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.1)
    return False


def main():
    count = int(sys.argv[1])
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    created = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        candidates = range(first, first + count)
        while len(created) < count and not stop.is_set():
            created += in_parallel(add, candidates)
            missing = count - len(created)
            start = candidates.stop
            candidates = range(start, start + missing)
        print(f'created {len(created)}', flush=True)
        # Until the parent closes stdin (or dies), or a signal comes.
        waiter = threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True)
        waiter.start()
        while not stop.wait(1):
            pass
    finally:
        removed = in_parallel(remove, created)
        left = sorted(set(created) - set(removed))
        if left:
            print(f'could not remove loop devices {left[:20]}...', file=sys.stderr, flush=True)
        print(f'removed {len(removed)}', flush=True)


if __name__ == '__main__':
    main()
