"""The wire test vectors (test/vectors/wire-vectors.json), shared with the TypeScript
client's suite: requests made through this client's public API must be exactly the vector's
canonical bytes; response packets sent to this client must come out as the vector's result,
events or error — through the sync client and the asyncio client alike."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

import diskseqd
from diskseqd import _proto, _wire
from support.fake_daemon import FakeDaemon

REPO_ROOT = Path(os.environ.get("DISKSEQD_REPO_ROOT") or Path(__file__).resolve().parents[3])
VECTORS = json.loads((REPO_ROOT / "test" / "vectors" / "wire-vectors.json").read_text())


def open_arguments(call: dict[str, Any]) -> dict[str, Any]:
    names = {"waitMs": "wait_ms"}
    arguments = {names.get(k, k): v for k, v in call.items() if k not in ("op", "diskseq")}
    return {"diskseq": int(call["diskseq"]), **arguments}


def submit(client: diskseqd.Client, call: dict[str, Any]):
    """Issues `call`; returns a function that waits for its outcome (a watch: its events)."""
    op = call["op"]
    if op == "open":
        pending = client.submit_open(**open_arguments(call))
        return lambda: pending.result(5)
    if op == "list":
        pending = client.submit_list(call.get("includePartitions", False))
        return lambda: {"devices": [device_json(d) for d in pending.result(5)]}
    if op == "hello":
        pending = client.submit_hello(call.get("clientName", ""))
        return lambda: {"hello": hello_json(pending.result(5))}
    watch = client.watch()
    return lambda: watch


def device_json(device: diskseqd.Device) -> dict[str, Any]:
    return {"diskseq": str(device.diskseq), "partition": device.partition, "name": device.name, "major": device.major,
            "minor": device.minor, "sizeBytes": str(device.size_bytes), "readOnly": device.read_only,
            "removable": device.removable, "driver": device.driver, "attributes": dict(device.attributes)}


def hello_json(hello: diskseqd.HelloInfo) -> dict[str, Any]:
    return {"protocolVersion": hello.protocol_version, "serverVersion": hello.server_version,
            "features": list(hello.features)}


def event_json(event: diskseqd.WatchEvent) -> dict[str, Any]:
    return {"kind": event.kind} if event.device is None else {"kind": event.kind, "device": device_json(event.device)}


def check_error(error: BaseException, meaning: dict[str, Any]) -> None:
    assert isinstance(error, diskseqd.DiskseqError), repr(error)
    assert error.code == meaning["code"]
    for field, attribute in (("wireCode", "wire_code"), ("message", "message"), ("osErrno", "os_errno")):
        if field in meaning:
            assert getattr(error, attribute) == meaning[field], field


@pytest.fixture
def fake():
    daemon = FakeDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.mark.parametrize("vector", VECTORS["requests"], ids=lambda v: v["name"])
def test_request_vector(fake, vector):
    with diskseqd.connect(fake.socket_path) as client:
        connection = fake.accept()
        submit(client, vector["call"])
        if vector["call"]["op"] == "watch":
            connection = fake.accept()  # a watch has a connection of its own
        connection.sock.settimeout(5)
        sent = connection.sock.recv(8192)
    assert sent.hex() == vector["hex"]
    assert _proto.Request.FromString(sent) == _proto.Request.FromString(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", VECTORS["responses"], ids=lambda v: v["name"])
def test_response_vector_sync(fake, vector):
    with diskseqd.connect(fake.socket_path) as client:
        connection = fake.accept()
        outcome = submit(client, vector["call"])
        if vector["call"]["op"] == "watch":
            connection = fake.accept()
        assert connection.next_request().id == 1
        for packet in vector["packets"]:
            connection.send_raw(bytes.fromhex(packet))
        if vector["call"]["op"] == "watch":
            watch = outcome()
            events, error = [], None
            try:
                while len(events) < len(vector["events"]) or "error" in vector:
                    events.append(event_json(watch.read(timeout=5)))
            except diskseqd.DiskseqError as raised:
                error = raised
            assert events == vector["events"]
            if "error" in vector:
                check_error(error, vector["error"])
            return
        if "error" in vector:
            with pytest.raises(diskseqd.DiskseqError) as info:
                outcome()
            check_error(info.value, vector["error"])
        else:
            assert outcome() == vector["result"]


@pytest.mark.parametrize("vector", [v for v in VECTORS["responses"] if v["call"]["op"] != "watch"], ids=lambda v: v["name"])
def test_response_vector_asyncio(fake, vector):
    call = vector["call"]

    async def main():
        client = await diskseqd.aio.connect(fake.socket_path)
        try:
            connection = await asyncio.to_thread(fake.accept)
            if call["op"] == "open":
                task = asyncio.ensure_future(client.open(**open_arguments(call)))
            elif call["op"] == "list":
                task = asyncio.ensure_future(client.list(call.get("includePartitions", False)))
            else:
                task = asyncio.ensure_future(client.hello(call.get("clientName", "")))
            request = await asyncio.to_thread(connection.next_request)
            assert request.id == 1
            for packet in vector["packets"]:
                connection.send_raw(bytes.fromhex(packet))
            try:
                result = await asyncio.wait_for(task, 5)
            except diskseqd.DiskseqError as error:
                assert "error" in vector, repr(error)
                check_error(error, vector["error"])
                return
            assert "error" not in vector
            if call["op"] == "list":
                result = {"devices": [device_json(d) for d in result]}
            elif call["op"] == "hello":
                result = {"hello": hello_json(result)}
            assert result == vector["result"]
        finally:
            await client.close()
    asyncio.run(main())


@pytest.mark.parametrize("vector", VECTORS["decode"], ids=lambda v: v["name"])
def test_decode_vector(vector):
    response = _wire.decode_response(bytes.fromhex(vector["hex"]))
    meaning: dict[str, Any] = {"id": str(response.id), "body": _wire.body_of(response)}
    if meaning["body"] == "opened":
        meaning["device"] = device_json(_wire.device_from_wire(response.opened.device))
    if meaning["body"] == "event":
        meaning.update(event_json(_wire.event_from_wire(response)))
    assert meaning == vector["response"]


def test_the_vectors_cover_the_contract():
    """Every ErrorCode, every EventKind and every Access mode appear in the vectors."""
    codes = {v["error"]["code"] for v in VECTORS["responses"] if "error" in v}
    assert codes >= set(_proto.ERROR_CODE_NAMES.values())
    kinds = {e["kind"] for v in VECTORS["responses"] for e in v.get("events", [])}
    assert kinds | {"unspecified"} >= {k.lower() for k in _proto.EVENT_KIND_NAMES.values()}
    assert {"added", "removed", "changed", "synced"} <= kinds
    accesses = {v["call"].get("access", "read-only") for v in VECTORS["requests"] if v["call"]["op"] == "open"}
    assert accesses == {"read-only", "read-write", "write-only"}
