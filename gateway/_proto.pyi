"""Type stubs for gateway._proto (pyext/_proto.pyx): the data plane's connection protocol."""
import asyncio
from collections.abc import Callable, Iterable
from typing import Any

PASS_HOST_PASS: int
PASS_HOST_NODE: int
PASS_HOST_REWRITE: int

def reason_phrase(status: int) -> str: ...

class Response:
    status: int
    body: bytes
    headers: Any
    def __init__(self, status: int = 200, body: bytes | str = b"",
                 headers: Iterable[tuple[str, str]] | dict[str, str] | None = None) -> None: ...

class UpstreamNode:
    host: str
    port: int
    weight: int
    host_header: bytes
    key: tuple[str, int]
    active: int
    def __init__(self, host: str, port: int, weight: int = 1) -> None: ...

class UpstreamGroup:
    id: str
    nodes: list[UpstreamNode]
    type: str
    retries: int
    connect_timeout: float
    send_timeout: float
    read_timeout: float
    keepalive_size: int
    keepalive_idle: float
    keepalive_requests: int
    pass_host: int
    upstream_host: bytes
    def __init__(self, id: str, nodes: list[UpstreamNode], type: str = "roundrobin",
                 retries: int = 1, connect_timeout: float = 6.0, send_timeout: float = 60.0,
                 read_timeout: float = 60.0, keepalive_size: int = 320,
                 keepalive_idle: float = 60.0, keepalive_requests: int = 1000,
                 pass_host: int = 0, upstream_host: bytes = b"") -> None: ...
    def pick(self, exclude: set[UpstreamNode] | None = None) -> UpstreamNode | None: ...

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

class Runtime:
    version: int
    router: Any
    routes: list[RouteEntry]
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    send_timeout: float
    max_body: int
    def __init__(self, version: int, router: Any, routes: list[RouteEntry],
                 max_request_line: int = 8192, max_header_size: int = 32768,
                 max_headers: int = 100, header_timeout: float = 10.0,
                 body_timeout: float = 60.0, keepalive_timeout: float = 60.0,
                 send_timeout: float = 60.0, max_body: int = 0) -> None: ...

class Server:
    loop: Any
    runtime: Runtime
    draining: bool
    sweep_interval: float
    on_log: Callable[[Exchange], None] | None
    requests_total: int
    connections_total: int
    @property
    def stats(self) -> dict[str, int]: ...
    scheme: str
    def __init__(self, loop: Any, runtime: Runtime, sweep_interval: float = 0.25) -> None: ...
    def protocol_factory(self) -> ClientConnection: ...
    def set_runtime(self, runtime: Runtime) -> None: ...
    @property
    def active_clients(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    def start_draining(self) -> None: ...
    def close_all(self) -> None: ...

class UpstreamConnection:
    node: UpstreamNode
    state: int
    requests: int

class ClientConnection(asyncio.Protocol):
    client_ip: bytes
    client_port: int
    state: int
    requests: int

class Exchange:
    """One proxied request; the context object every plugin phase receives."""
    runtime: Runtime
    route: RouteEntry | None
    method_id: int
    is_head: bool
    keep_alive: bool
    upgrading: bool
    node: UpstreamNode | None
    response_started: bool
    status: int
    #: the status the upstream answered (502/504 when it could not be reached); 0: none
    upstream_status: int
    start_time: float
    upstream_start: float
    upstream_latency: float
    bytes_sent: int
    consumer: Any
    response_headers: list[list[str]] | None
    @property
    def extra_response_headers(self) -> list[tuple[bytes, bytes]] | None:
        """Headers ``add_response_header`` added."""
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
        """"http", or "https" on a TLS listener."""
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
