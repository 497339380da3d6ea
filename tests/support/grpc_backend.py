"""A real grpcio server for the gRPC proxy tests: service ``test.Echo`` with one method of each
call kind, messages as raw bytes (generic handlers, no generated code), and what it saw kept
for the tests (metadata, cancellations)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from tests.support.upstream import free_port

SERVICE = "test.Echo"


def _identity(data: bytes) -> bytes:
    return data


class GrpcBackend:
    """Methods: Unary (echo; metadata ``x-sleep`` seconds first, ``x-fail`` "code:message" to
    fail), ServerStream (the request is "n" or "n:size": n messages back, padded by size), ClientStream (the requests
    joined), Bidi (each request echoed at once). Every call answers trailer ``x-trailer:
    done-<method>`` and binary trailer ``x-bin-bin``."""

    def __init__(self, tls: tuple[bytes, bytes] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.seen: list[dict[str, str]] = []   # each call's invocation metadata
        self.time_left: list[float | None] = []  # each call's deadline as it arrived (seconds)
        self.cancelled = threading.Event()
        self.calls = 0
        self.streamed = 0                      # messages ServerStream has handed to grpcio
        self.server: grpc.Server | None = None

    # -- handlers --
    def _begin(self, context: grpc.ServicerContext, method: str) -> None:
        self.calls += 1
        self.seen.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        self.time_left.append(context.time_remaining())
        context.add_callback(self._on_done(context))
        context.set_trailing_metadata((("x-trailer", f"done-{method}"), ("x-bin-bin", b"\x00\x01")))

    def _on_done(self, context: grpc.ServicerContext) -> Any:
        def done() -> None:
            if context.code() is None and not context.is_active():
                self.cancelled.set()
        return done

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._begin(context, "unary")
        meta = dict(context.invocation_metadata())
        if "x-sleep" in meta:
            deadline = time.monotonic() + float(meta["x-sleep"])
            while time.monotonic() < deadline and context.is_active():
                time.sleep(0.01)
            if not context.is_active():
                self.cancelled.set()
        if "x-fail" in meta:
            code, _, message = str(meta["x-fail"]).partition(":")
            context.abort(grpc.StatusCode[code], message)
        return request

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._begin(context, "server_stream")
        count, _, size = request.partition(b":")
        for i in range(int(count or b"0")):
            self.streamed = i + 1
            yield b"message %d" % i + b"." * int(size or b"0")

    def client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._begin(context, "client_stream")
        return b"|".join(requests)

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._begin(context, "bidi")
        for r in requests:
            yield b"echo " + r

    # -- lifecycle --
    def start(self) -> GrpcBackend:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary, _identity, _identity),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, _identity,
                                                                 _identity),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, _identity,
                                                                 _identity),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, _identity, _identity),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        address = f"127.0.0.1:{self.port}"
        if self.tls is None:
            server.add_insecure_port(address)
        else:
            key, chain = self.tls
            server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))
        server.start()
        self.server = server
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)
            self.server = None

    def __enter__(self) -> GrpcBackend:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class EchoClient:
    """Calls test.Echo through ``target`` ("host:port") with raw bytes messages."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None,
                 options: list[tuple[str, Any]] | None = None) -> None:
        self.channel = grpc.secure_channel(target, credentials, options or []) \
            if credentials is not None else grpc.insecure_channel(target, options or [])
        self.unary = self.channel.unary_unary(f"/{SERVICE}/Unary", _identity, _identity)
        self.server_stream = self.channel.unary_stream(f"/{SERVICE}/ServerStream", _identity,
                                                       _identity)
        self.client_stream = self.channel.stream_unary(f"/{SERVICE}/ClientStream", _identity,
                                                       _identity)
        self.bidi = self.channel.stream_stream(f"/{SERVICE}/Bidi", _identity, _identity)
        self.missing = self.channel.unary_unary(f"/{SERVICE}/Missing", _identity, _identity)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
