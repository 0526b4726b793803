"""The exceptions every deltaserve_client call raises.

Each gRPC status code has its own subclass of :class:`DeltaserveError`, so
callers branch with ``except`` instead of comparing codes::

    try:
        client.submit_delta(x, delta, version)
    except (deltaserve_client.Aborted, deltaserve_client.ResourceExhausted):
        pass                          # too stale / queue full: recompute, retry later
    except deltaserve_client.DeltaserveError as e:
        print(e.code, e.message)      # grpc.StatusCode and the server's message

:class:`DeltaserveError` derives from ``grpc.RpcError``, so code written
against raw gRPC errors (``except grpc.RpcError``) still catches them; but
``code`` is an attribute here (``e.code``), not a method as on a gRPC call
object. ``details()`` is kept as a method returning ``message``.

A few subclasses also derive from the matching builtin, so generic handlers
keep working: :class:`InvalidArgument` is a ``ValueError`` (client-side shape
checks raise it too) and :class:`DeadlineExceeded` is a ``TimeoutError``.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "DeltaserveError", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
    "Unavailable", "DataLoss", "Unauthenticated", "error_class", "from_rpc_error",
]


class DeltaserveError(grpc.RpcError):
    """Base class of every error a deltaserve_client call raises.

    Attributes:
        code: the ``grpc.StatusCode`` (the server's, or the one the client
            chose for a local failure, e.g. INVALID_ARGUMENT for a 3-D array).
        message: the human-readable details (the server's status message).
        cause: the underlying ``grpc.RpcError``, or None for client-side errors.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None,
                 cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.cause = cause

    def details(self) -> str:
        """The message, as ``grpc.Call.details()`` would return it."""
        return self.message

    def __str__(self) -> str:
        return "%s: %s" % (self.code.name, self.message)

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, self.message)


class Cancelled(DeltaserveError):
    """CANCELLED: the call was cancelled (e.g. a watch stream closed by the client)."""
    code = grpc.StatusCode.CANCELLED


class Unknown(DeltaserveError):
    """UNKNOWN: an error the server did not classify."""
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(DeltaserveError, ValueError):
    """INVALID_ARGUMENT: wrong matrix shape or non-finite values; nothing was changed."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(DeltaserveError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's deadline (``timeout``) passed."""
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(DeltaserveError):
    """NOT_FOUND: unknown model name."""
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DeltaserveError):
    """ALREADY_EXISTS."""
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(DeltaserveError):
    """PERMISSION_DENIED: the caller may not do this."""
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DeltaserveError):
    """RESOURCE_EXHAUSTED: the learner's queue is full or a message is too large; back off."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(DeltaserveError):
    """FAILED_PRECONDITION: the system is not in a state for this call."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DeltaserveError):
    """ABORTED: the submission is older than ``max_staleness``; refetch and resubmit."""
    code = grpc.StatusCode.ABORTED


class OutOfRange(DeltaserveError):
    """OUT_OF_RANGE."""
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(DeltaserveError):
    """UNIMPLEMENTED: the server does not have this method."""
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(DeltaserveError):
    """INTERNAL: a bug or broken invariant in the server or the transport."""
    code = grpc.StatusCode.INTERNAL


class Unavailable(DeltaserveError):
    """UNAVAILABLE: the server is unreachable or shutting down; retry with backoff."""
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(DeltaserveError):
    """DATA_LOSS."""
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(DeltaserveError):
    """UNAUTHENTICATED: missing or invalid credentials."""
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[DeltaserveError]] = {
    cls.code: cls for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
        PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
        Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}


def error_class(code: grpc.StatusCode) -> Type[DeltaserveError]:
    """The DeltaserveError subclass for a status code (DeltaserveError itself for OK)."""
    return _BY_CODE.get(code, DeltaserveError)


def from_rpc_error(error: grpc.RpcError) -> DeltaserveError:
    """The DeltaserveError for a ``grpc.RpcError`` (returned as is if it already is one)."""
    if isinstance(error, DeltaserveError):
        return error
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    code = code() if callable(code) else grpc.StatusCode.UNKNOWN
    message = (details() if callable(details) else None) or str(error) or code.name
    cls = error_class(code)
    return cls(message, code=None if cls is not DeltaserveError else code, cause=error)
