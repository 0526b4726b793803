"""Locates the generated deltaserve.v1 stubs (config_pb2, trainer_pb2, trainer_pb2_grpc).

The build generates them into ``<build>/python/deltaserve/v1/`` (CMake target
``deltaserve_python_stubs``); they are never committed. They are found, in order:

1. already importable (``<build>/python`` on ``PYTHONPATH`` or ``sys.path``);
2. the directory named by the environment variable ``DELTASERVE_PYTHON_STUBS``;
3. ``<repo>/build/python`` next to this source tree (what ``make`` builds).

``deltaserve`` is an implicit namespace package (the generated tree has no
``__init__.py``), so this package is called ``deltaserve_client`` to avoid
shadowing it.
"""

import importlib
import os
import sys

_REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _try_import():
    try:
        config_pb2 = importlib.import_module("deltaserve.v1.config_pb2")
        trainer_pb2 = importlib.import_module("deltaserve.v1.trainer_pb2")
        trainer_pb2_grpc = importlib.import_module("deltaserve.v1.trainer_pb2_grpc")
    except ImportError:
        return None
    return config_pb2, trainer_pb2, trainer_pb2_grpc


def _load():
    found = _try_import()
    if found:
        return found
    candidates = []
    if os.environ.get("DELTASERVE_PYTHON_STUBS"):
        candidates.append(os.environ["DELTASERVE_PYTHON_STUBS"])
    candidates.append(os.path.join(_REPO_ROOT, "build", "python"))
    for path in candidates:
        if os.path.isfile(os.path.join(path, "deltaserve", "v1", "trainer_pb2.py")):
            sys.path.insert(0, path)
            importlib.invalidate_caches()
            found = _try_import()
            if found:
                return found
    raise ImportError(
        "deltaserve.v1 stubs not found: build the target deltaserve_python_stubs and put "
        "<build>/python on PYTHONPATH or set DELTASERVE_PYTHON_STUBS=<build>/python "
        "(looked in: %s)" % ", ".join(candidates))


config_pb2, trainer_pb2, trainer_pb2_grpc = _load()
