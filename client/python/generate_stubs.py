#!/usr/bin/python3
"""Generates the deltaserve.v1 Python stubs from the repository's proto/ folder.

    /usr/bin/python3 client/python/generate_stubs.py            # → client/python/_generated
    /usr/bin/python3 client/python/generate_stubs.py --out=DIR  # then DELTASERVE_PYTHON_STUBS=DIR

For the PYTHONPATH route (``PYTHONPATH=client/python``, no pip, no CMake):
deltaserve_client looks in ``client/python/_generated`` by itself. The files
written are ``DIR/deltaserve/v1/{config,trainer}_pb2{,_grpc}.py`` (an implicit
namespace package, as protoc lays them out); they are never committed
(client/python/.gitignore). ``pip install ./client/python`` runs the same
function from setup.py into the wheel instead.

Needs Debian's python3-grpc-tools and python3-pkg-resources (grpc_tools.protoc
imports pkg_resources but the package does not depend on it).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "_generated")
PROTO_FILES = ("deltaserve/v1/config.proto", "deltaserve/v1/trainer.proto",
               "deltaserve/v1/admin.proto", "deltaserve/v1/state.proto")


class StubGenerationError(RuntimeError):
    """The stubs could not be generated; the message says what to install or set."""


def find_proto_dir(proto_dir: Optional[str] = None) -> str:
    """The folder holding deltaserve/v1/*.proto: the argument, $DELTASERVE_PROTO_DIR,
    or <repo>/proto next to client/python."""
    candidates = [p for p in (proto_dir, os.environ.get("DELTASERVE_PROTO_DIR"),
                              os.path.join(HERE, "..", "..", "proto")) if p]
    for path in candidates:
        if all(os.path.isfile(os.path.join(path, f)) for f in PROTO_FILES):
            return os.path.abspath(path)
    raise StubGenerationError(
        "deltaserve .proto files not found (looked for %s in: %s); run from a deltaserve "
        "checkout or set DELTASERVE_PROTO_DIR=<repo>/proto"
        % (", ".join(PROTO_FILES), ", ".join(os.path.abspath(p) for p in candidates)))


def generate(out_dir: str = DEFAULT_OUT, proto_dir: Optional[str] = None) -> List[str]:
    """Runs grpc_tools.protoc on the protos into out_dir; returns the files written."""
    proto_dir = find_proto_dir(proto_dir)
    try:
        from grpc_tools import protoc  # imports pkg_resources
    except ImportError as e:
        raise StubGenerationError(
            "cannot import grpc_tools.protoc (%s): install Debian's python3-grpc-tools and "
            "python3-pkg-resources (apt-get install python3-grpc-tools "
            "python3-pkg-resources), and use /usr/bin/python3 or a venv made with "
            "--system-site-packages" % e) from e
    os.makedirs(out_dir, exist_ok=True)
    args = ["grpc_tools.protoc", "-I" + proto_dir, "--python_out=" + out_dir,
            "--grpc_python_out=" + out_dir] + [os.path.join(proto_dir, f) for f in PROTO_FILES]
    status = protoc.main(args)
    if status != 0:
        raise StubGenerationError("grpc_tools.protoc failed with status %d: %s"
                                  % (status, " ".join(args)))
    written = []
    for f in PROTO_FILES:
        stem = os.path.join(out_dir, f[:-len(".proto")])
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            if not os.path.isfile(stem + suffix):
                raise StubGenerationError("grpc_tools.protoc did not write %s" % (stem + suffix))
            written.append(stem + suffix)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder (default: %(default)s)")
    parser.add_argument("--proto-dir", default=None,
                        help="folder with deltaserve/v1/*.proto (default: $DELTASERVE_PROTO_DIR "
                             "or <repo>/proto)")
    args = parser.parse_args(argv)
    try:
        written = generate(args.out, args.proto_dir)
    except StubGenerationError as e:
        print("generate_stubs: %s" % e, file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
