"""deltaserve_client: a Python client for the deltaserve trainer service.

    from deltaserve_client import TrainerClient, NumpyReplica
    client = TrainerClient("127.0.0.1:50051")
    y, version = client.forward(x)                        # round trip
    client.submit_delta(x, delta, version, outputs=y)    # delta = d loss / d y
    with NumpyReplica(client) as replica:                # local weights, pushed by the server
        y, version = replica.forward(x)
    with client.session() as s:                          # many calls on one stream
        y, version = s.forward(x)                        # or s.forward_async(x).result()

Every call raises a DeltaserveError subclass (InvalidArgument, NotFound,
Aborted, ResourceExhausted, Unavailable, DeadlineExceeded, ...) on failure.
The generated stubs (deltaserve.v1.*) come from pip install, generate_stubs.py
or the CMake build; see _stubs.py and client/python/README.md.
"""

from deltaserve_client.errors import (Aborted, AlreadyExists, Cancelled, DataLoss,
                                      DeadlineExceeded, DeltaserveError, FailedPrecondition,
                                      Internal, InvalidArgument, NotFound, OutOfRange,
                                      PermissionDenied, ResourceExhausted, Unauthenticated,
                                      Unavailable, Unimplemented, Unknown, error_class,
                                      from_rpc_error)
from deltaserve_client._stubs import StubsNotFoundError, config_pb2, trainer_pb2, trainer_pb2_grpc
from deltaserve_client.client import TrainerClient, WatchStream
from deltaserve_client.convert import from_matrix, to_matrix
from deltaserve_client.local_server import LocalServer
from deltaserve_client.mlp import InputNormalizer, NumpyMlp
from deltaserve_client.replica import NumpyReplica
from deltaserve_client.session import Session

__version__ = "0.2.0"

__all__ = [
    "TrainerClient", "Session", "NumpyReplica", "NumpyMlp", "InputNormalizer", "LocalServer",
    "WatchStream", "to_matrix",
    "from_matrix", "config_pb2", "trainer_pb2", "trainer_pb2_grpc", "StubsNotFoundError",
    "DeltaserveError", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
    "Unavailable", "DataLoss", "Unauthenticated", "error_class", "from_rpc_error",
    "__version__",
]
