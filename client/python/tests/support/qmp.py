"""A minimal QMP client (QEMU's JSON monitor over a unix stream socket) that can pass an fd
with a command in SCM_RIGHTS, as `add-fd` needs. docs/qemu.md shows the same calls."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

QEMU = shutil.which("qemu-system-x86_64")


class QMP:
    """One QMP session on a connected stream socket. Every read waits at most `timeout`
    seconds: a QEMU that stops answering fails the test with TimeoutError, not a hang."""

    def __init__(self, sock: socket.socket, timeout: float = 20.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rb")
        greeting = self._read()
        assert "QMP" in greeting, greeting
        self.execute("qmp_capabilities")

    @classmethod
    def connect(cls, path: str, timeout: float = 20.0) -> "QMP":
        """Connects to QEMU's listening QMP socket (`-qmp unix:PATH,server=on,wait=off`)."""
        # The socket file appears at bind(), a moment before QEMU listens: retry a refusal.
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
            except ConnectionRefusedError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            try:
                return cls(sock, timeout)
            except BaseException:
                sock.close()
                raise

    def _read(self) -> dict[str, Any]:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("QEMU closed the QMP socket")
            message = json.loads(line)
            if "event" not in message:
                return message

    def execute(self, command: str, fd: int | None = None, **arguments: Any) -> dict[str, Any]:
        """Runs one command; with `fd`, the fd travels with it in SCM_RIGHTS (QEMU dups it)."""
        data = json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n"
        if fd is None:
            self.sock.sendall(data)
        else:
            socket.send_fds(self.sock, [data], [fd])
        return self._read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wait_for_socket(path: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise RuntimeError(f"exited ({process.returncode}) before its QMP socket appeared")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no QMP socket at {path} after {timeout} s")
        time.sleep(0.02)


def qemu_base_args(qmp_path: str) -> list[str]:
    """A QEMU that runs no guest at all (no machine, no CPU started, no default devices),
    listening for QMP on `qmp_path`."""
    return [*qemu_no_guest_args(), "-qmp", f"unix:{qmp_path},server=on,wait=off"]


def qemu_no_guest_args() -> list[str]:
    return [QEMU or "qemu-system-x86_64", "-M", "none", "-nographic", "-nodefaults", "-S"]


def start_qemu_with_qmp_pair() -> tuple[subprocess.Popen, "QMP"]:
    """A QEMU that runs no guest, its QMP monitor on one end of a socketpair it inherits.

    Not a listening socket: under load, QEMU 7.2 was once seen blocked in a second, blocking
    accept() on its QMP listener right after accepting the test's connection and sending the
    greeting, never reading qmp_capabilities (CI: the test waited in recv until its limit).
    A connected socket leaves it nothing to accept."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        args = [*qemu_no_guest_args(), "-chardev", f"socket,id=qmp0,fd={theirs.fileno()},server=off",
                "-mon", "chardev=qmp0,mode=control"]
        process = subprocess.Popen(args, pass_fds=[theirs.fileno()], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    try:
        return process, QMP(ours)
    except BaseException:
        process.kill()
        process.communicate()
        ours.close()
        raise


HEXDUMP = re.compile(r"^([0-9a-f]{8}):((?:\s+[0-9a-f]{2}){1,16})", re.MULTILINE)


def qemu_io_bytes(output: str) -> dict[int, bytes]:
    """The bytes that `qemu-io ... "read -v OFFSET LEN"` printed, by offset (QEMU prints them
    on its standard output, flushed at exit)."""
    result: dict[int, bytes] = {}
    for match in HEXDUMP.finditer(output):
        result[int(match.group(1), 16)] = bytes(int(b, 16) for b in match.group(2).split())
    return result


def read_back(output: str, offset: int, length: int) -> bytes:
    lines = qemu_io_bytes(output)
    return b"".join(lines.get(offset + i, b"") for i in range(0, length, 16))[:length]


def private_dir() -> str:
    return tempfile.mkdtemp(prefix="diskseqd-qemu-")
