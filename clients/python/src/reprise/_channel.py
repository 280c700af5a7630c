"""Opens the gRPC channel: plaintext or TLS, with an optional bearer token on every call
(the coordinator's `--auth-tokens`; a `worker` token for workers, `caller` for callers)."""
from __future__ import annotations

import collections

import grpc


class _ClientCallDetails(
    collections.namedtuple("_ClientCallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    # An interceptor rather than call credentials, because gRPC only sends
    # call credentials over TLS and a loopback coordinator is often plaintext.
    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or []) + [self._header]
        return _ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)


def open_channel(address: str, token: str | None = None, tls: bool | bytes = False) -> grpc.Channel:
    """`tls`: False for plaintext, True for TLS with the system roots, or PEM root certificates as bytes."""
    if tls:
        roots = tls if isinstance(tls, (bytes, bytearray)) else None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots))
    else:
        channel = grpc.insecure_channel(address)
    if token:
        channel = grpc.intercept_channel(channel, _BearerToken(token))
    return channel
