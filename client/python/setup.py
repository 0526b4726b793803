"""setuptools hook: generates the deltaserve.v1 stubs while building the package.

Metadata lives in pyproject.toml. build_py runs generate_stubs.generate() (that
is, grpc_tools.protoc on <repo>/proto, or $DELTASERVE_PROTO_DIR) into the build
folder, so the wheel holds deltaserve/v1/*_pb2*.py next to deltaserve_client;
for an editable install (pip install -e) they go to client/python/_generated,
where deltaserve_client looks for them.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_stubs  # noqa: E402


class BuildPyWithStubs(build_py):
    """build_py, then the generated stubs into the same tree."""

    def run(self):
        super().run()
        if self.dry_run:
            return
        out = generate_stubs.DEFAULT_OUT if getattr(self, "editable_mode", False) \
            else self.build_lib
        try:
            written = generate_stubs.generate(out)
        except generate_stubs.StubGenerationError as e:
            raise SystemExit("deltaserve-client: cannot generate the deltaserve.v1 stubs: %s"
                             % e) from e
        for path in written:
            self.announce("generated %s" % path, level=2)


setup(cmdclass={"build_py": BuildPyWithStubs})
