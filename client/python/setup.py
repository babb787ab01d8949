"""Build step of the diskseqd Python client: compile the wire contract with protoc.

The package does not ship generated Python code. Code that a current protoc generates
imports `google.protobuf.runtime_version`, which Debian 12's runtime (protobuf 4.21) lacks,
and code from an old protoc is on borrowed time with new runtimes. Instead protoc writes a
binary FileDescriptorSet (a stable format every runtime reads), and diskseqd/_proto.py
builds the message classes from it at import. Any protoc from 3.0 on will do.

The .proto is the repository's proto/diskseqd.proto (two levels up), or, when building from
an sdist, the copy the sdist carries in proto/. PROTOC overrides the compiler's path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO_NAME = "diskseqd.proto"
DESCRIPTOR_NAME = "diskseqd.desc"


def find_proto() -> Path:
    """The wire contract: the checkout's proto/, else the sdist's own copy."""
    for candidate in (HERE.parent.parent / "proto" / PROTO_NAME, HERE / "proto" / PROTO_NAME):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"diskseqd: cannot find {PROTO_NAME} (looked in ../../proto and ./proto)")


def compile_descriptor(out: Path) -> None:
    """Runs protoc to write the FileDescriptorSet of diskseqd.proto to `out`."""
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    if not protoc:
        raise SystemExit("diskseqd: protoc is needed to build this package "
                         "(Debian: apt-get install protobuf-compiler; or set PROTOC)")
    proto = find_proto()
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([protoc, f"--proto_path={proto.parent}", f"--descriptor_set_out={out}", proto.name], check=True)


class BuildPyWithDescriptor(build_py):
    """build_py, plus the descriptor set compiled fresh into the build tree."""

    def run(self) -> None:
        super().run()
        compile_descriptor(Path(self.build_lib) / "diskseqd" / DESCRIPTOR_NAME)


class SdistWithProto(sdist):
    """sdist, carrying a copy of the .proto so the sdist builds on its own."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proto" / PROTO_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(find_proto(), target)


setup(cmdclass={"build_py": BuildPyWithDescriptor, "sdist": SdistWithProto})
