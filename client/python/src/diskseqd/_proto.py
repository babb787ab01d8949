"""The wire contract's message classes, built at import from the compiled descriptor.

setup.py has protoc compile proto/diskseqd.proto into `diskseqd.desc` (a FileDescriptorSet)
inside this package. Building the classes from it with the runtime's public API works the
same on Debian 12's protobuf 4.21 and on current PyPI releases, where generated code would
tie the package to one runtime generation. A private pool keeps these types apart from any
other copy of diskseqd.proto a program may load into the default pool.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "diskseqd.v1"


def _load_pool() -> descriptor_pool.DescriptorPool:
    try:
        data = resources.files(__package__).joinpath("diskseqd.desc").read_bytes()
    except FileNotFoundError as error:  # a source checkout used without installing
        raise ImportError("diskseqd: diskseqd.desc is missing; install the package "
                          "(pip install ./client/python), which compiles proto/diskseqd.proto") from error
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.AddSerializedFile(file.SerializeToString())
    return pool


POOL = _load_pool()

if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
    _message_class = message_factory.GetMessageClass
else:  # protobuf 4.21 (Debian 12)
    _message_class = message_factory.MessageFactory(POOL).GetPrototype


def _message(name: str) -> Any:
    return _message_class(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def _enum(name: str, prefix: str) -> dict[int, str]:
    """Enum number -> its name without `prefix` (ERROR_CODE_NOT_FOUND -> NOT_FOUND)."""
    enum = POOL.FindEnumTypeByName(f"{PACKAGE}.{name}")
    return {value.number: value.name.removeprefix(prefix) for value in enum.values}


# Message classes (typed as Any: they are made at run time).
Request: Any = _message("Request")
Response: Any = _message("Response")
OpenRequest: Any = _message("OpenRequest")
Device: Any = _message("Device")

#: ErrorCode number -> name without ERROR_CODE_ (1 -> "NOT_FOUND").
ERROR_CODE_NAMES: dict[int, str] = _enum("ErrorCode", "ERROR_CODE_")
#: EventKind number -> name without EVENT_KIND_ (1 -> "ADDED").
EVENT_KIND_NAMES: dict[int, str] = _enum("EventKind", "EVENT_KIND_")
#: Access number -> name without ACCESS_ (1 -> "READ_WRITE").
ACCESS_NAMES: dict[int, str] = _enum("Access", "ACCESS_")
