"""deltaserve_client: a Python client for the deltaserve trainer service.

    from deltaserve_client import TrainerClient, NumpyReplica
    client = TrainerClient("127.0.0.1:50051")
    y, version = client.forward(x)                        # round trip
    client.submit_delta(x, delta, version, outputs=y)    # delta = d loss / d y
    with NumpyReplica(client) as replica:                # local weights, pushed by the server
        y, version = replica.forward(x)

The generated stubs (deltaserve.v1.*) come from the build; see _stubs.py.
"""

from deltaserve_client._stubs import config_pb2, trainer_pb2, trainer_pb2_grpc
from deltaserve_client.client import TrainerClient, from_matrix, to_matrix
from deltaserve_client.local_server import LocalServer
from deltaserve_client.mlp import NumpyMlp
from deltaserve_client.replica import NumpyReplica

__all__ = ["TrainerClient", "NumpyReplica", "NumpyMlp", "LocalServer", "to_matrix",
           "from_matrix", "config_pb2", "trainer_pb2", "trainer_pb2_grpc"]
