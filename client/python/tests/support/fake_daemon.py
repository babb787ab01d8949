"""A scripted stand-in for diskseqd: a real SEQPACKET listener that lets a test answer each
request with any Response, right or wrong, with any fds. The real daemon never sends the
wrong things these tests need (an fd of another device, two fds, a truncated packet)."""
from __future__ import annotations

import array
import os
import select
import shutil
import socket
import tempfile
from typing import Any

from google.protobuf import json_format

from diskseqd import _proto


class FakeConnection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def next_request(self, timeout: float = 5.0) -> Any:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise TimeoutError("the client sent no request")
        data = self.sock.recv(65536)
        return _proto.Request.FromString(data)

    def send_raw(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
        self.sock.sendmsg([data], ancillary)

    def respond(self, request_id: int, fds: list[int] | tuple[int, ...] = (), **fields: Any) -> None:
        """Sends Response(id=request_id, **fields); a field given as a dict is merged in."""
        response = _proto.Response(id=request_id)
        for name, value in fields.items():
            target = getattr(response, name)
            if isinstance(value, dict):
                _fill(target, value)
            else:
                target.CopyFrom(value)
        self.send_raw(response.SerializeToString(), fds)

    def close(self) -> None:
        self.sock.close()


def _fill(message: Any, values: dict[str, Any]) -> None:
    json_format.ParseDict(values, message)
    message.SetInParent()


def wire_device(diskseq: int, partition: int = 0, major: int = 7, minor: int = 0, name: str = "fake0",
                **extra: Any) -> dict[str, Any]:
    return {"diskseq": diskseq, "partition": partition, "name": name, "major": major, "minor": minor,
            "size_bytes": 1 << 20, **extra}


def device_of_fd(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


class FakeDaemon:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="diskseqd-fake-")
        self.socket_path = os.path.join(self.dir, "fake.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.socket_path)
        self.listener.listen(16)
        self.connections: list[FakeConnection] = []

    def accept(self, timeout: float = 5.0) -> FakeConnection:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        sock.settimeout(None)
        connection = FakeConnection(sock)
        self.connections.append(connection)
        return connection

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)
