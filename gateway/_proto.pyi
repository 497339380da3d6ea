"""Type stubs for gateway._proto (pyext/_proto.pyx): the data plane's connection protocol."""
import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self

from typing_extensions import deprecated, disjoint_base

from gateway._native import TlsConnection, TlsEngine

# Cython `cdef class`es can be subclassed, but each has its own C layout, so a class cannot
# inherit from two of them: @disjoint_base (PEP 800). `python -m mypy.stubtest gateway._native
# gateway._proto` (tests/test_sourcecode.py) checks this file against the built module;
# tests/stubtest-allowlist.txt lists what Cython generates and no stub should declare.

PASS_HOST_PASS: int
PASS_HOST_NODE: int
PASS_HOST_REWRITE: int
NGHTTP2_VERSION: str

def reason_phrase(status: int) -> str: ...

JSON_HEADERS: tuple[tuple[str, str], ...]
MESSAGE_HTTP_HEADERS: tuple[tuple[str, str], ...]

class HeadSpanError(ValueError):
    """A span handed to the head writer lies outside its buffer: the response is refused."""

@disjoint_base
class HeadBuffer:
    """The head writer's growable buffer (its methods are C-only; one per Server)."""

@disjoint_base
class Response:
    status: int
    body: bytes
    headers: Any
    grpc_status: int
    """The gRPC status a gRPC client gets for this answer; -1: derived from the HTTP status."""
    def __init__(self, status: int = 200, body: bytes | str = b"",
                 headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
                 grpc_status: int = -1) -> None: ...

@disjoint_base
class UpstreamNode:
    host: str
    port: int
    weight: int
    @property
    def priority(self) -> int: ...
    @property
    def name(self) -> str | None:
        """The host name the node's address was resolved from (None: the config gave an IP)."""
    host_header: bytes
    key: tuple[Any, ...]
    @property
    def ssl(self) -> Any:
        """scheme https: the node's client context (an UpstreamSSLContext), else None."""
    @property
    def server_hostname(self) -> str | None:
        """scheme https: the name sent as SNI and checked in the certificate, else None."""
    @property
    def active(self) -> int:
        """This worker's requests in flight to the node."""
    def __init__(self, host: str, port: int, weight: int = 1, priority: int = 0,
                 name: str | None = None, ssl: Any = None,
                 server_hostname: str | None = None) -> None: ...
    def watch_health(self, table: Any, slot: int) -> None:
        """The node's health is ``slot`` of ``table`` (a SharedHealth)."""
    @property
    def down(self) -> bool:
        """Whether its health checks have marked the node down."""

@disjoint_base
class PassiveChecks:
    """One upstream's passive health check settings (pyext/runtime/health.pyx)."""
    @property
    def upstream_id(self) -> str: ...
    def __init__(self, upstream_id: str, healthy_statuses: Iterable[int],
                 unhealthy_statuses: Iterable[int], successes: int, http_failures: int,
                 tcp_failures: int, timeouts: int) -> None: ...

@disjoint_base
class Balancer:
    """Chooses a node among the nodes of one priority level (pyext/runtime/balancers.pyx)."""
    @property
    def nodes(self) -> tuple[UpstreamNode, ...]: ...
    def __init__(self, nodes: Iterable[UpstreamNode]) -> None: ...
    def choose(self, exclude: set[UpstreamNode] | None = None) -> UpstreamNode | None: ...

@disjoint_base
class RoundRobinBalancer(Balancer): ...

@disjoint_base
class LeastConnBalancer(Balancer): ...

@disjoint_base
class ChashBalancer(Balancer):
    @property
    def size(self) -> int:
        """Points on the ring."""
    @property
    def key_of(self) -> Callable[[Any], str] | None: ...
    def __init__(self, nodes: Iterable[UpstreamNode],
                 key_of: Callable[[Any], str] | None = None) -> None: ...
    def node_for(self, key: str | bytes,
                 exclude: set[UpstreamNode] | None = None) -> UpstreamNode | None: ...

@disjoint_base
class EwmaBalancer(Balancer):
    @property
    def decay_time(self) -> float: ...
    def __init__(self, nodes: Iterable[UpstreamNode], decay_time: float = 10.0) -> None: ...
    def cost(self, node: UpstreamNode) -> float | None: ...
    def record(self, node: UpstreamNode, seconds: float) -> None: ...

BALANCERS: dict[str, type[Balancer]]

@disjoint_base
class UpstreamGroup:
    id: str
    nodes: list[UpstreamNode]
    type: str
    retries: int
    retry_timeout: float
    retry_statuses: frozenset[int] | None
    connect_timeout: float
    send_timeout: float
    read_timeout: float
    keepalive_size: int
    keepalive_idle: float
    keepalive_requests: int
    pass_host: int
    upstream_host: bytes
    @property
    def balancers(self) -> tuple[Balancer, ...]:
        """One per priority level, highest first."""
    @property
    def observes(self) -> bool: ...
    @property
    def key_of(self) -> Callable[[Any], str] | None: ...
    @property
    def checked(self) -> bool:
        """Some node has health checks."""
    @property
    def fail_open(self) -> bool: ...
    @property
    def passive(self) -> PassiveChecks | None: ...
    @property
    def grpc(self) -> bool:
        """Scheme grpc or grpcs: calls go over pooled HTTP/2 sessions."""
    def __init__(self, id: str, nodes: list[UpstreamNode], type: str = "roundrobin",
                 retries: int = 1, connect_timeout: float = 6.0, send_timeout: float = 60.0,
                 read_timeout: float = 60.0, keepalive_size: int = 320,
                 keepalive_idle: float = 60.0, keepalive_requests: int = 1000,
                 pass_host: int = 0, upstream_host: bytes = b"",
                 key_of: Callable[[Any], str] | None = None,
                 balancers: tuple[Balancer, ...] | None = None,
                 passive: PassiveChecks | None = None, fail_open: bool = True,
                 retry_timeout: float = 0.0,
                 retry_statuses: frozenset[int] | None = None,
                 grpc: bool = False) -> None: ...
    def with_timeouts(self, connect_timeout: float, send_timeout: float,
                      read_timeout: float) -> UpstreamGroup: ...
    def pick(self, ex: Exchange | None = None,
             exclude: set[UpstreamNode] | None = None) -> UpstreamNode | None: ...
    def report(self, node: UpstreamNode, seconds: float) -> None: ...

@disjoint_base
class RouteEntry:
    index: int
    id: str
    upstream: UpstreamGroup | None
    rewrite: tuple[Callable[..., Any], ...]
    access: tuple[Callable[..., Any], ...]
    before_proxy: tuple[Callable[..., Any], ...]
    header_filter: tuple[Callable[..., Any], ...]
    body_filter: tuple[Callable[..., Any], ...]
    log: tuple[Callable[..., Any], ...]
    request_hooks: tuple[Callable[..., Any], ...]
    has_plugins: bool
    websocket: bool
    plugins: dict[str, Any]
    def __init__(self, index: int, id: str, upstream: UpstreamGroup | None = None,
                 rewrite: tuple[Callable[..., Any], ...] = (),
                 access: tuple[Callable[..., Any], ...] = (),
                 before_proxy: tuple[Callable[..., Any], ...] = (),
                 header_filter: tuple[Callable[..., Any], ...] = (),
                 body_filter: tuple[Callable[..., Any], ...] = (),
                 log: tuple[Callable[..., Any], ...] = (),
                 plugins: dict[str, Any] | None = None, websocket: bool = False) -> None: ...

@disjoint_base
class Runtime:
    version: int
    router: Any
    routes: list[RouteEntry]
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    send_timeout: float
    max_body: int
    h2_max_concurrent_streams: int
    h2_max_header_list_size: int
    timed: bool
    def __init__(self, version: int, router: Any, routes: list[RouteEntry],
                 max_request_line: int = 8192, max_header_size: int = 32768,
                 max_headers: int = 100, header_timeout: float = 10.0,
                 body_timeout: float = 60.0, keepalive_timeout: float = 60.0,
                 send_timeout: float = 60.0, max_body: int = 0,
                 h2_max_concurrent_streams: int = 128,
                 h2_max_header_list_size: int = 32768) -> None: ...

@disjoint_base
class UpstreamPool:
    """One worker's keep-alive upstream connections (the server's ``pool``)."""
    def __init__(self, *args: object, **kwargs: object) -> None: ...
    def idle_counts(self) -> dict[str, int]:
        """Idle connections by node label ("host:port", "https://host:port (name)")."""
    def __len__(self) -> int: ...

@disjoint_base
class Server:
    loop: Any
    runtime: Runtime
    @property
    def draining(self) -> bool: ...
    sweep_interval: float
    on_log: Callable[[Exchange], None] | None
    requests_total: int
    connections_total: int
    clock: float
    @property
    def stats(self) -> dict[str, int]: ...
    scheme: str
    acceptor: Any
    def __init__(self, loop: Any, runtime: Runtime, sweep_interval: float = 0.25) -> None: ...
    def protocol_factory(self) -> ClientConnection: ...
    def tls_protocol_factory(self) -> TlsTransport:
        """For the tls_listen sockets: rustls under a TlsTransport, which makes the
        ClientConnection once the handshake is done."""
    tls_misdirected: Callable[[bytes, str | None], bool] | None
    tls_engine: TlsEngine | None
    def set_runtime(self, runtime: Runtime) -> None: ...
    @property
    def active_clients(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    def start_draining(self, idle_grace: float = ...) -> None: ...
    def close_all(self) -> None: ...
    @property
    def h2_pool(self) -> H2UpstreamPool:
        """HTTP/2 sessions to gRPC nodes."""

@disjoint_base
class UpstreamConnection:
    """A pooled connection to an upstream node (made by the Exchange, never by Python code)."""
    node: UpstreamNode
    @property
    def state(self) -> int:
        """One of the U_* states (pyext/connections/states.pxd); changed only by the class."""
    requests: int
    def __init__(self, server: Server, node: UpstreamNode) -> None: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def pause_reading_for_client(self) -> None: ...
    def resume_reading_for_client(self) -> None: ...

@disjoint_base
class H2StreamOwner:
    """What an upstream HTTP/2 stream reports to (C methods only)."""

@disjoint_base
class H2UpstreamStream:
    """One stream on an upstream HTTP/2 session (made by the pool for a GrpcCall)."""
    @property
    def stream_id(self) -> int: ...
    @property
    def status(self) -> int: ...
    @property
    def response_bytes(self) -> bool: ...
    def __init__(self, owner: H2StreamOwner, headers: list[tuple[bytes, bytes]]) -> None: ...

@disjoint_base
class H2UpstreamSession:
    """One HTTP/2 connection to a gRPC node (the asyncio protocol of that connection)."""
    @property
    def node(self) -> UpstreamNode: ...
    @property
    def state(self) -> int: ...
    @property
    def retired(self) -> bool: ...
    @property
    def opened(self) -> int: ...
    @property
    def idle_deadline(self) -> float: ...
    def __init__(self, pool: H2UpstreamPool, node: UpstreamNode, group: UpstreamGroup) -> None: ...
    async def connect(self, loop: Any, timeout: float) -> None: ...
    def flush_now(self) -> None:
        """Writes what nghttp2 has queued (scheduled once per event loop turn)."""
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...

@disjoint_base
class H2UpstreamPool:
    """One worker's HTTP/2 sessions to gRPC nodes (the server's ``h2_pool``)."""
    def __init__(self, *args: object, **kwargs: object) -> None: ...
    def session_counts(self) -> dict[str, tuple[int, int]]:
        """(sessions, open streams) by node "host:port"."""
    def __len__(self) -> int: ...

@disjoint_base
class GrpcDownstream:
    """The downstream side of a gRPC call (C methods only)."""

@disjoint_base
class GrpcCall(H2StreamOwner):
    """One gRPC call proxied to a stream on a pooled upstream HTTP/2 session."""
    @property
    def group(self) -> UpstreamGroup: ...
    @property
    def node(self) -> UpstreamNode | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started(self) -> bool: ...
    @property
    def responded(self) -> bool: ...
    @property
    def finished(self) -> bool: ...
    @property
    def grpc_status(self) -> int: ...
    @property
    def http_status(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    def __init__(self, down: GrpcDownstream, pool: H2UpstreamPool, loop: Any,
                 group: UpstreamGroup, client_fields: list[tuple[bytes, bytes]],
                 client_ip: bytes | None = None, scheme: bytes = b"http",
                 ex: Exchange | None = None) -> None: ...
    def on_deadline(self) -> None: ...
    def begin(self) -> None: ...
    def request_data(self, data: bytes, end: bool = False) -> None: ...
    def response_sent(self, n: int) -> None: ...
    def client_reset(self) -> None: ...

@disjoint_base
class PyGrpcDownstream(GrpcDownstream):
    """A downstream whose events go to a Python object's methods (response, data, trailers,
    consume, reset, done)."""
    def __init__(self, target: Any) -> None: ...

@disjoint_base
class H2GrpcDownstream(GrpcDownstream):
    """A gRPC call's side of one HTTP/2 downstream stream (made by the stream)."""
    def __init__(self, stream: Any, ex: Exchange) -> None: ...

def grpc_timeout_seconds(value: bytes) -> float:
    """A grpc-timeout value in seconds; -1 when invalid."""
def grpc_timeout_value(seconds: float) -> bytes:
    """Seconds as a grpc-timeout value (rounded up to milliseconds)."""
def grpc_status_for_http(status: int) -> int:
    """The gRPC status an HTTP status means to a gRPC client."""
def grpc_message_encode(message: str) -> bytes:
    """grpc-message's percent-encoding."""
def grpc_status_fields(code: int, message: str) -> list[tuple[bytes, bytes]]: ...
def grpc_trailers_only(code: int, message: str,
                       extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]: ...

GRPC_OK: int
GRPC_CANCELLED: int
GRPC_UNKNOWN: int
GRPC_DEADLINE_EXCEEDED: int
GRPC_PERMISSION_DENIED: int
GRPC_RESOURCE_EXHAUSTED: int
GRPC_UNIMPLEMENTED: int
GRPC_INTERNAL: int
GRPC_UNAVAILABLE: int
GRPC_UNAUTHENTICATED: int

# Not an asyncio.Protocol subclass at runtime (a cdef class cannot derive from a Python class),
# but it implements every Protocol method: declared one so `loop.create_server(
# server.protocol_factory)` type-checks without a cast.
@disjoint_base
class ClientConnection(asyncio.Protocol):
    client_ip: bytes
    client_port: int
    @property
    def state(self) -> int:
        """One of the C_* states (pyext/connections/states.pxd); changed only by the class."""
    requests: int
    @property
    def on_tls_listener(self) -> bool: ...
    @property
    def tls(self) -> TlsSession | None: ...
    def __init__(self, server: Server, on_tls_listener: bool = False) -> None: ...

@disjoint_base
class H2Stream(ClientConnection):
    """One HTTP/2 request stream: the client its Exchange answers (pyext/connections/h2_stream.pyx)."""

@disjoint_base
class H2Connection(ClientConnection):
    """An HTTP/2 client connection, an nghttp2 server session (pyext/connections/h2_session.pyx)."""
    def run_flush(self) -> None: ...

@disjoint_base
class TlsSession:
    """What the TLS handshake settled for one client connection."""
    @property
    def connection(self) -> TlsConnection:
        """The rustls connection (rust/tls)."""
    @property
    def server_name(self) -> str | None:
        """The SNI the client sent (None: none sent)."""
    @property
    def ssl_id(self) -> str | None:
        """The ssl resource whose certificate was served."""
    @property
    def client_cert_required(self) -> bool: ...
    def __init__(self, connection: TlsConnection) -> None: ...
    @property
    def alpn_protocol(self) -> str | None: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def cipher(self) -> str | None: ...
    @property
    def client_cert(self) -> bytes | None: ...

@disjoint_base
class TlsTransport(asyncio.Protocol):
    """TLS on a tls_listen socket (rustls): the socket's protocol, and the transport of the
    ClientConnection made when the handshake completes."""
    def __init__(self, server: Server) -> None: ...
    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def writelines(self, parts: Iterable[bytes]) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...
    def set_protocol(self, protocol: ClientConnection) -> None: ...
    def get_protocol(self) -> ClientConnection: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

@disjoint_base
class TryLog:
    """The ended tries of a request that was retried (made by the Exchange at its first retry)."""
    @property
    def tries(self) -> list[tuple[str, int, float]]:
        """(address, status, seconds) of each ended try, oldest first."""
    @property
    def first_start(self) -> float: ...
    def __init__(self, first_start: float) -> None: ...

@disjoint_base
class RequestContext:
    """What plugins see of one request, and the choices they make for its upstream request."""
    route: RouteEntry | None
    node: UpstreamNode | None
    upgrading: bool
    start_time: float
    consumer: Any
    response_headers: list[list[str]] | None
    @property
    def extra_response_headers(self) -> list[tuple[bytes, bytes]] | None:
        """Headers ``add_response_header`` added."""
    @property
    def default_response_headers(self) -> list[tuple[bytes, bytes, bytes]] | None:
        """(name, lowercased name, value) ``set_default_response_header`` recorded."""
    @property
    def upstream_addr(self) -> str | None:
        """The node of the request's (last) try as "host:port"."""
    @property
    def previous_tries(self) -> tuple[tuple[str, int, float], ...] | None:
        """(address, status, seconds) of each try before the last; None without a retry."""
    @property
    def body_limit(self) -> int:
        """What ``set_body_limit`` set (0: the runtime's limit)."""
    @property
    def upstream_header_set(self) -> list[tuple[bytes, bytes]] | None:
        """Lines plugins add to the upstream request (``set_``/``add_upstream_header``)."""
    @property
    def upstream_header_remove(self) -> set[bytes] | None:
        """Lowercased names of the client's header lines not sent upstream."""
    @property
    def upstream_path(self) -> bytes | None:
        """The upstream target ``set_upstream_uri`` set (None: the client's)."""
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def raw_target(self) -> bytes: ...
    @property
    def query_string(self) -> str: ...
    @property
    def args(self) -> dict[str, str]: ...
    @property
    def host(self) -> str: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def client_port(self) -> int: ...
    @property
    def route_id(self) -> str | None: ...
    @property
    def scheme(self) -> str:
        """"http", or "https" on a TLS connection."""
    @property
    def tls(self) -> TlsSession | None:
        """The connection's TlsSession, None on HTTP."""
    @property
    def server_addr(self) -> str | None:
        """The local address that accepted the connection."""
    @property
    def server_port(self) -> int | None:
        """The local port that accepted the connection."""
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> dict[str, str]: ...
    def header(self, name: str, default: str | None = None) -> str | None: ...
    @property
    def cookies(self) -> dict[str, str]:
        """Request cookies by name (parsed on first use)."""
    @property
    def state(self) -> dict[Any, Any]:
        """Per-request plugin state shared between plugins (created on first use)."""
    @property
    @deprecated("ctx.vars is the old name of ctx.state (per-request plugin state)")
    def vars(self) -> dict[Any, Any]: ...
    @property
    def params(self) -> dict[str, str]:
        """Path parameters of the matched route."""
    @property
    def upstream(self) -> UpstreamGroup | None:
        """The group the request is proxied to: a plugin's choice, else the route's."""
    @property
    def request_bytes(self) -> int: ...
    @property
    def request_body_bytes(self) -> int: ...
    @property
    def elapsed(self) -> float:
        """Seconds since the request head arrived."""
    def attach_consumer(self, consumer: Any) -> None:
        """For authentication plugins: the request belongs to this ConsumerEntry; its own
        non-credential plugins join the request."""
    def set_upstream(self, group: UpstreamGroup) -> None:
        """Proxy to ``group`` instead of the route's upstream (call in rewrite/access)."""
    def set_upstream_host(self, host: str | bytes) -> None: ...
    def set_upstream_method(self, method: str | bytes) -> None:
        """The method sent upstream (an uppercase token); raises ValueError otherwise."""
    def add_response_header(self, name: str | bytes, value: str | bytes) -> None:
        """Added to the response, proxied or generated; call before the head is sent."""
    def set_default_response_header(self, name: str | bytes, value: str | bytes) -> None:
        """Sent with the response unless it already has a header of that name (the
        upstream's or an added one); needs no header_filter hook."""
    def set_body_limit(self, limit: int) -> None:
        """Request bodies larger than ``limit`` bytes are answered 413."""
    def set_upstream_header(self, name: str | bytes, value: str | bytes) -> None:
        """Sent upstream instead of the client's lines of that name and earlier added ones."""
    def add_upstream_header(self, name: str | bytes, value: str | bytes) -> None:
        """Sent upstream in addition to the lines of that name already there."""
    def remove_upstream_header(self, name: str | bytes) -> None:
        """No line of that name is sent upstream (the client's nor added ones)."""
    def set_upstream_uri(self, uri: str | bytes) -> None: ...
    def set_response_header(self, name: str, value: str) -> None: ...
    def remove_response_header(self, name: str) -> None: ...

@disjoint_base
class PhaseRunner(RequestContext):
    """The plugin phases of one request (the layer between the context and the Exchange)."""
    async def finish_phases_async(self, first: Awaitable[Any],
                                  rest: tuple[Callable[..., Any], ...]) -> int:
        """Internal: the phases after a hook that returned a coroutine; their outcome."""

@disjoint_base
class Exchange(PhaseRunner):
    """One proxied request; the context object every plugin phase receives."""
    runtime: Runtime
    method_id: int
    is_head: bool
    keep_alive: bool
    response_started: bool
    status: int
    #: the status the upstream answered (502/504 when it could not be reached); 0: none
    upstream_status: int
    timed: bool
    upstream_start: float
    upstream_latency: float
    bytes_sent: int
    async def continue_after(self, pending: Awaitable[int]) -> None:
        """Internal: goes on with the exchange once asynchronous phases are done."""
    async def open_connection(self, node: UpstreamNode) -> None:
        """Internal: connects to ``node`` (no idle pooled connection) and sends the request."""

@disjoint_base
class NativeHook:
    """A built-in plugin's phase compiled to C; calling it runs the same code."""
    @property
    def plugin(self) -> Any: ...
    @property
    def phase(self) -> str: ...
    def __new__(cls, plugin: Any, phase: str) -> Self: ...
    def __call__(self, ctx: Exchange) -> Any: ...

@disjoint_base
class PrometheusLog(NativeHook):
    def bind_store(self, store: Any) -> None: ...

@disjoint_base
class LimitAccess(NativeHook):
    rejected: Any
    def bind_limiter(self, limiter: Any, scope: str | None, request_key: Callable[[Any], str],
                     by_remote_addr: bool) -> None: ...
    def sync_under(self, tag: int) -> None: ...

@disjoint_base
class LimitCountAccess(LimitAccess):
    def configure(self, count: int, window: float, sliding: bool, quota_headers: bool) -> None: ...

@disjoint_base
class LimitReqAccess(LimitAccess):
    def configure(self, rate: float, burst: float, nodelay: bool,
                  counted_window: float = 0.0) -> None: ...

@disjoint_base
class KeyAuthAccess(NativeHook):
    def bind_index(self, header: str, by_value: dict[str, Any]) -> None: ...

@disjoint_base
class RequestIdRewrite(NativeHook):
    def configure(self, header: str, in_response: bool, uuid: bool) -> None: ...

@disjoint_base
class ConnLease:
    """A unit of a limit-conn gauge held by a request (given back once)."""
    @property
    def delay(self) -> float: ...
    def release(self) -> None: ...

@disjoint_base
class LimitConnAccess(LimitAccess):
    def configure(self, conn: int, burst: int) -> None: ...

@disjoint_base
class LimitConnLog(NativeHook):
    def configure(self, adapt_delay: bool) -> None: ...
