"""Writes test/vectors/wire-vectors.json: the wire test vectors both clients check.

The JSON is the contract, not this script: tests never regenerate it, and a change to it is
a change to what every client must do. This script only helped write it: the bytes come from
messages built field by field here (not from the clients' request-building code), and each
packet is cross-checked with protoc --decode before anything is written. The meanings (what
a client must make of each packet) are written out by hand below.

    python test/vectors/make-wire-vectors.py   # any python with the diskseqd package installed
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from google.protobuf import text_format

from diskseqd import _proto

HERE = Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"
U64 = (1 << 64) - 1
BIG = (1 << 63) + 1
ODD53 = (1 << 53) + 1


def request(**fields) -> str:
    message = _proto.Request(id=1, **fields)
    return check(message, "Request")


def response(**fields) -> str:
    message = _proto.Response(**fields)
    return check(message, "Response")


def check(message, kind: str) -> str:
    data = message.SerializeToString(deterministic=True)
    decoded = subprocess.run(["protoc", f"--proto_path={PROTO}", f"--decode=diskseqd.v1.{kind}", "diskseqd.proto"],
                             input=data, capture_output=True, check=True).stdout.decode()
    reparsed = type(message)()
    text_format.Parse(decoded, reparsed, descriptor_pool=_proto.POOL)
    assert reparsed == message, (decoded, str(message))
    return data.hex()


def device(diskseq, partition=0, name="loop3", major=7, minor=3, size=8 << 20, read_only=False, removable=False,
           driver="loop", attributes=None):
    wire = _proto.Device(diskseq=diskseq, partition=partition, name=name, major=major, minor=minor, size_bytes=size,
                         read_only=read_only, removable=removable, driver=driver)
    for key, value in (attributes or {}).items():
        wire.attributes[key] = value
    meaning = {"diskseq": str(diskseq), "partition": partition, "name": name, "major": major, "minor": minor,
               "sizeBytes": str(size), "readOnly": read_only, "removable": removable, "driver": driver,
               "attributes": dict(attributes or {})}
    return wire, meaning


OpenRequest = _proto.OpenRequest
requests = [
    {"name": "open with every default: only the diskseq is on the wire (read-only is Access 0)",
     "call": {"op": "open", "diskseq": "42"},
     "hex": request(open=OpenRequest(diskseq=42))},
    {"name": "open read-only, exclusive, explicit",
     "call": {"op": "open", "diskseq": "42", "partition": 0, "access": "read-only", "exclusive": True},
     "hex": request(open=OpenRequest(diskseq=42, exclusive=True))},
    {"name": "open read-write, partition 1, wait 2000 ms, one expect",
     "call": {"op": "open", "diskseq": "7", "partition": 1, "access": "read-write", "waitMs": 2000,
              "expect": {"loop/backing_file": "/srv/vm.img"}},
     "hex": request(open=OpenRequest(diskseq=7, partition=1, access=1, wait_ms=2000,
                                     expect={"loop/backing_file": "/srv/vm.img"}))},
    {"name": "open write-only, every field at its maximum, two expect keys (encoded in key order)",
     "call": {"op": "open", "diskseq": str(U64), "partition": 0xFFFFFFFF, "access": "write-only", "exclusive": True,
              "direct": True, "nonblock": True, "sync": True, "dsync": True, "waitMs": 0xFFFFFFFF,
              "expect": {"dm/uuid": "CRYPT-LUKS2-0123", "ro": "0"}},
     "hex": request(open=OpenRequest(diskseq=U64, partition=0xFFFFFFFF, access=2, exclusive=True, direct=True,
                                     nonblock=True, sync=True, dsync=True, wait_ms=0xFFFFFFFF,
                                     expect={"dm/uuid": "CRYPT-LUKS2-0123", "ro": "0"}))},
    {"name": "open above 2^53",
     "call": {"op": "open", "diskseq": str(ODD53), "partition": 3},
     "hex": request(open=OpenRequest(diskseq=ODD53, partition=3))},
    {"name": "list of disks only: an empty ListRequest is still present",
     "call": {"op": "list", "includePartitions": False},
     "hex": request(list=_proto.Request().list.__class__())},
    {"name": "list with partitions",
     "call": {"op": "list", "includePartitions": True},
     "hex": request(list=_proto.Request().list.__class__(include_partitions=True))},
    {"name": "hello with a client name",
     "call": {"op": "hello", "clientName": "vectors"},
     "hex": request(hello=_proto.Request().hello.__class__(protocol_version=1, client_name="vectors"))},
    {"name": "watch",
     "call": {"op": "watch"},
     "hex": request(watch=_proto.Request().watch.__class__())},
]

Error = _proto.Response().error.__class__
DeviceList = _proto.Response().devices.__class__
DeviceEvent = _proto.Response().event.__class__
HelloReply = _proto.Response().hello.__class__
Opened = _proto.Response().opened.__class__
CODES = ["UNSPECIFIED", "NOT_FOUND", "STALE", "PERMISSION_DENIED", "BUSY", "INVALID_ARGUMENT", "TIMEOUT",
         "EXPECTATION_FAILED", "RESOURCE_EXHAUSTED", "UNSUPPORTED", "INTERNAL"]
ERRNO = {"NOT_FOUND": 2, "BUSY": 16, "PERMISSION_DENIED": 13, "INTERNAL": 5}

responses = []
for number, code in enumerate(CODES):
    message = f"{code.lower().replace('_', ' ')} for the vectors"
    responses.append({
        "name": f"ErrorCode {number} ({code}) answering an open",
        "call": {"op": "open", "diskseq": "9"},
        "packets": [response(id=1, error=Error(code=number, message=message, os_errno=ERRNO.get(code, 0)))],
        "error": {"code": code, "wireCode": number, "message": message, "osErrno": ERRNO.get(code, 0)}})
responses += [
    {"name": "an ErrorCode this client does not know: UNSPECIFIED, the number kept; no message: a made-up one",
     "call": {"op": "open", "diskseq": "9"},
     "packets": [response(id=1, error=Error(code=99))],
     "error": {"code": "UNSPECIFIED", "wireCode": 99, "message": "diskseqd refused the request (99)", "osErrno": 0}},
    {"name": "no message: the client names the code",
     "call": {"op": "list"},
     "packets": [response(id=1, error=Error(code=3, os_errno=1))],
     "error": {"code": "PERMISSION_DENIED", "wireCode": 3, "message": "diskseqd refused the request (PERMISSION_DENIED)",
               "osErrno": 1}},
    {"name": "a negative os_errno (int32, ten bytes on the wire) is kept",
     "call": {"op": "open", "diskseq": "9"},
     "packets": [response(id=1, error=Error(code=10, message="odd", os_errno=-1))],
     "error": {"code": "INTERNAL", "wireCode": 10, "message": "odd", "osErrno": -1}},
]
d1, m1 = device(BIG, 0, "loop3", 7, 3, ODD53, True, True, "loop",
                {"loop/backing_file": "/srv/vm.img", "loop/partscan": "1", "ro": "1", "size": "17592186044418"})
d2, m2 = device(BIG, 1, "loop3p1", 259, 0, 1 << 20, False, False, "loop", {"partition": "1", "start": "2048"})
d3, m3 = device(5, 0, "vda", 254, 0, 274877906944, False, False, "virtio_blk", {})
responses += [
    {"name": "a DeviceList in one packet: 64-bit numbers beyond 2^53, maps, flags",
     "call": {"op": "list", "includePartitions": True},
     "packets": [response(id=1, devices=DeviceList(devices=[d1, d2]))],
     "result": {"devices": [m1, m2]}},
    {"name": "a DeviceList split over three packets (more on all but the last; one part empty) is joined",
     "call": {"op": "list", "includePartitions": True},
     "packets": [response(id=1, devices=DeviceList(devices=[d1], more=True)),
                 response(id=1, devices=DeviceList(more=True)),
                 response(id=1, devices=DeviceList(devices=[d2, d3]))],
     "result": {"devices": [m1, m2, m3]}},
    {"name": "an empty DeviceList",
     "call": {"op": "list"},
     "packets": [response(id=1, devices=DeviceList())],
     "result": {"devices": []}},
    {"name": "a HelloReply",
     "call": {"op": "hello", "clientName": "vectors"},
     "packets": [response(id=1, hello=HelloReply(protocol_version=1, server_version="diskseqd 0.1.0",
                                                 features=["watch", "wait"]))],
     "result": {"hello": {"protocolVersion": 1, "serverVersion": "diskseqd 0.1.0", "features": ["watch", "wait"]}}},
    {"name": "UNSUPPORTED answering a hello",
     "call": {"op": "hello", "clientName": "vectors"},
     "packets": [response(id=1, error=Error(code=9, message="protocol version 2 is not supported"))],
     "error": {"code": "UNSUPPORTED", "wireCode": 9, "message": "protocol version 2 is not supported", "osErrno": 0}},
    {"name": "every EventKind of a watch: ADDED, CHANGED, REMOVED (with devices), SYNCED (without)",
     "call": {"op": "watch"},
     "packets": [response(id=1, event=DeviceEvent(kind=1, device=d1)),
                 response(id=1, event=DeviceEvent(kind=4)),
                 response(id=1, event=DeviceEvent(kind=3, device=d3)),
                 response(id=1, event=DeviceEvent(kind=2, device=d2))],
     "events": [{"kind": "added", "device": m1}, {"kind": "synced"}, {"kind": "changed", "device": m3},
                {"kind": "removed", "device": m2}]},
    {"name": "EVENT_KIND_UNSPECIFIED ends a watch with a protocol error (INTERNAL) after the events before it",
     "call": {"op": "watch"},
     "packets": [response(id=1, event=DeviceEvent(kind=1, device=d3)), response(id=1, event=DeviceEvent(kind=0))],
     "events": [{"kind": "added", "device": m3}],
     "error": {"code": "INTERNAL"}},
    {"name": "an Error ends a watch",
     "call": {"op": "watch"},
     "packets": [response(id=1, error=Error(code=8, message="too many watchers (limit 256)"))],
     "events": [],
     "error": {"code": "RESOURCE_EXHAUSTED", "wireCode": 8, "message": "too many watchers (limit 256)", "osErrno": 0}},
]

decode = [
    {"name": "Opened (its fd travels beside the bytes, in SCM_RIGHTS)",
     "hex": response(id=3, opened=Opened(device=d2)),
     "response": {"id": "3", "body": "opened", "device": m2}},
    {"name": "an id of 2^64 - 1",
     "hex": response(id=U64, hello=HelloReply(protocol_version=1)),
     "response": {"id": str(U64), "body": "hello"}},
    {"name": "an id beyond 2^53 on an event",
     "hex": response(id=ODD53, event=DeviceEvent(kind=2, device=d1)),
     "response": {"id": str(ODD53), "body": "event", "kind": "removed", "device": m1}},
]

vectors = {
    "about": ("Wire test vectors of the diskseqd protocol (proto/diskseqd.proto, version 1), checked by the "
              "TypeScript client (test/wire-vectors.test.ts) and the Python client "
              "(client/python/tests/test_wire_vectors.py). 'requests': what a client must send for a call, "
              "as the first request (id 1) on a fresh connection: a Request that decodes to the same "
              "message as 'hex', which is its canonical encoding (defaults omitted, map entries in key order; "
              "a canonical encoder sends exactly these bytes). 'responses': packets answering such a call "
              "(id 1) and what the client must make of them: 'result', 'events' (a watch's events in order), "
              "and/or 'error' (the DiskseqError raised; a field left out is not checked). 'decode': packets "
              "only decoded. 64-bit numbers are decimal strings; Device is in its JSON form (camelCase)."),
    "requests": requests,
    "responses": responses,
    "decode": decode,
}
(HERE / "wire-vectors.json").write_text(json.dumps(vectors, indent=2) + "\n")
print(f"{len(requests)} requests, {len(responses)} responses, {len(decode)} decode-only")
