"""TLS, client certificates and bearer tokens for deltaserve channels (docs/security.md).

The same rules as the C++ client (client/channel_security.h):

* TLS when any of ``tls_ca_file``, ``tls_cert_file`` or ``tls_server_name`` is set;
  ``tls_ca_file`` is the PEM bundle the server's certificate must chain to (None:
  the system roots). ``tls_cert_file`` + ``tls_key_file``: a client certificate, for
  servers with mutual TLS. ``tls_server_name``: the name the server's certificate
  carries, when the target address is not it.
* The token is ``token``, else the contents of ``token_file`` (whitespace
  stripped), else ``$DELTASERVE_TOKEN``; every call then carries the metadata
  ``authorization: Bearer <token>`` (an interceptor, so it works over TLS and, on
  loopback, over plaintext).
"""

from __future__ import annotations

import collections
import os
from typing import Any, List, Optional, Sequence, Tuple

import grpc

from deltaserve_client.errors import InvalidArgument

TOKEN_ENV = "DELTASERVE_TOKEN"


def _read(what: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument("%s %s: cannot open (%s)" % (what, path, e.strerror)) from None


def resolve_token(token: Optional[str] = None, token_file: Optional[str] = None) -> Optional[str]:
    """The token to send (see the module docstring), or None. Raises InvalidArgument for an
    empty token file or a token metadata cannot carry (whitespace, non-ASCII)."""
    source = "token"
    if not token and token_file:
        token = _read("token file", token_file).decode("utf-8", "replace").strip()
        source = "token file %s" % token_file
        if not token:
            raise InvalidArgument("%s is empty" % source)
    elif not token:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = TOKEN_ENV
    if not token:
        return None
    if any(c <= " " or c > "~" for c in token):
        raise InvalidArgument("%s: a token is printable ASCII without spaces "
                              "(deltaserve-cli token makes one)" % source)
    return token


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class _AuthorizationInterceptor(grpc.UnaryUnaryClientInterceptor,
                                grpc.UnaryStreamClientInterceptor,
                                grpc.StreamUnaryClientInterceptor,
                                grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", "Bearer " + token)

    def _details(self, d: Any) -> _CallDetails:
        metadata = list(d.metadata or ()) + [self._header]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def create_channel(target: str, options: Sequence[Tuple[str, Any]] = (), *,
                   tls_ca_file: Optional[str] = None, tls_cert_file: Optional[str] = None,
                   tls_key_file: Optional[str] = None, tls_server_name: Optional[str] = None,
                   token: Optional[str] = None, token_file: Optional[str] = None) -> grpc.Channel:
    """A channel to ``target`` with TLS and the token as the module docstring says.

    Raises InvalidArgument if a file cannot be read, only one of cert/key is given,
    or the token is unusable. Never blocks (handshake failures surface on the first
    call as Unavailable).
    """
    if bool(tls_cert_file) != bool(tls_key_file):
        raise InvalidArgument("a client certificate needs both tls_cert_file and tls_key_file")
    opts: List[Tuple[str, Any]] = list(options)
    if tls_ca_file or tls_cert_file or tls_server_name:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read("CA file", tls_ca_file) if tls_ca_file else None,
            private_key=_read("key file", tls_key_file) if tls_key_file else None,
            certificate_chain=_read("certificate file", tls_cert_file) if tls_cert_file
            else None)
        if tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        channel = grpc.secure_channel(target, credentials, options=opts)
    else:
        channel = grpc.insecure_channel(target, options=opts)
    resolved = resolve_token(token, token_file)
    if resolved is None:
        return channel
    return grpc.intercept_channel(channel, _AuthorizationInterceptor(resolved))


def add_arguments(parser: Any) -> None:
    """Adds the C++ binaries' security flags to an argparse parser (dashes work too)."""
    parser.add_argument("--tls_ca_file", "--tls-ca-file", dest="tls_ca_file",
                        help="TLS: PEM CA bundle the server's certificate chains to")
    parser.add_argument("--tls_cert_file", "--tls-cert-file", dest="tls_cert_file",
                        help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls_key_file", "--tls-key-file", dest="tls_key_file",
                        help="PEM key of --tls_cert_file")
    parser.add_argument("--tls_server_name", "--tls-server-name", dest="tls_server_name",
                        help="name in the server's certificate, if not the target's host")
    parser.add_argument("--token_file", "--token-file", dest="token_file",
                        help="file holding the bearer token; default $%s" % TOKEN_ENV)


def security_kwargs(args: Any) -> dict:
    """The TrainerClient keyword arguments for what add_arguments parsed."""
    return {name: getattr(args, name) for name in
            ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name", "token_file")}
