"""Locates the generated deltaserve.v1 stubs (config_pb2, trainer_pb2, trainer_pb2_grpc).

They are generated, never committed, by one of:

- ``pip install --no-build-isolation ./client/python`` (setup.py runs
  grpc_tools.protoc into the wheel: they land next to deltaserve_client);
- ``/usr/bin/python3 client/python/generate_stubs.py`` (into
  ``client/python/_generated``);
- the CMake target ``deltaserve_python_stubs`` (into ``<build>/python``).

They are found, in this order:

1. already importable as ``deltaserve.v1.*`` (installed by pip, or a folder
   holding them on ``PYTHONPATH``);
2. the folder named by the environment variable ``DELTASERVE_PYTHON_STUBS``;
3. ``client/python/_generated`` (what generate_stubs.py writes);
4. ``<repo>/build/python`` (what ``make`` builds).

``deltaserve`` is an implicit namespace package (the generated tree has no
``__init__.py``), so this package is called ``deltaserve_client`` to avoid
shadowing it.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import List, Optional, Tuple

_CLIENT_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
_REPO_ROOT = os.path.abspath(os.path.join(_CLIENT_ROOT, "..", ".."))
_MODULES = ("deltaserve.v1.config_pb2", "deltaserve.v1.trainer_pb2",
            "deltaserve.v1.trainer_pb2_grpc")


class StubsNotFoundError(ImportError):
    """The generated deltaserve.v1 stubs are missing; the message says what to run."""


def _try_import() -> Optional[Tuple[ModuleType, ...]]:
    try:
        return tuple(importlib.import_module(m) for m in _MODULES)
    except ImportError:
        # A half-imported namespace must not hide a later candidate.
        for name in ("deltaserve.v1", "deltaserve"):
            module = sys.modules.get(name)
            if module is not None and getattr(module, "__file__", None) is None:
                del sys.modules[name]
        return None


def candidate_dirs() -> List[str]:
    """The folders searched after sys.path, in order."""
    candidates = []
    if os.environ.get("DELTASERVE_PYTHON_STUBS"):
        candidates.append(os.path.abspath(os.environ["DELTASERVE_PYTHON_STUBS"]))
    candidates.append(os.path.join(_CLIENT_ROOT, "_generated"))
    candidates.append(os.path.join(_REPO_ROOT, "build", "python"))
    return candidates


def _load() -> Tuple[ModuleType, ...]:
    found = _try_import()
    if found:
        return found
    candidates = candidate_dirs()
    for path in candidates:
        if os.path.isfile(os.path.join(path, "deltaserve", "v1", "trainer_pb2.py")):
            sys.path.insert(0, path)
            importlib.invalidate_caches()
            found = _try_import()
            if found:
                return found
            sys.path.remove(path)
    raise StubsNotFoundError(
        "deltaserve.v1 stubs (generated from proto/, never committed) not found. Do one of: "
        "`pip install --no-build-isolation ./client/python` (generates them into the install); "
        "`/usr/bin/python3 client/python/generate_stubs.py` (for PYTHONPATH=client/python; "
        "needs python3-grpc-tools and python3-pkg-resources); or build the CMake target "
        "deltaserve_python_stubs and set DELTASERVE_PYTHON_STUBS=<build>/python. "
        "Looked on sys.path and in: %s" % ", ".join(candidates))


config_pb2, trainer_pb2, trainer_pb2_grpc = _load()
