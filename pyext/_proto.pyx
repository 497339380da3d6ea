# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The data plane's connection protocol: client connections, pooled upstream connections and the
exchange (one proxied request) between them.

Everything on the per-request path is here or in Rust (called through the C ABI in
gateway_ffi.h): bytes arrive in ``ClientConnection.data_received``, the head is parsed in one Rust
call, routed, rewritten with memcpy from the parsed spans and written to a pooled upstream
connection; the response head is parsed the same way and bodies stream both ways with
back-pressure. Python objects are only built when a plugin asks for them.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.string cimport memcpy, memchr
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

import asyncio
from urllib.parse import parse_qs
import errno
import logging
import socket
import sys

cdef extern from "gateway_ffi.h":
    enum:
        GW_MAX_HEADERS
        GW_HF_HOP_BY_HOP
        GW_HF_HOST
        GW_HF_CONTENT_LENGTH
        GW_HF_TRANSFER_ENCODING
        GW_HF_CONNECTION
        GW_HF_EXPECT
        GW_HF_X_FORWARDED_FOR
        GW_HF_X_FORWARDED_PROTO
        GW_HF_X_FORWARDED_HOST
        GW_HF_X_REAL_IP
        GW_HF_UPGRADE
        GW_BODY_NONE
        GW_BODY_LENGTH
        GW_BODY_CHUNKED
        GW_BODY_UNTIL_CLOSE
        GW_METHOD_OTHER
        GW_METHOD_GET
        GW_METHOD_HEAD
        GW_METHOD_POST
        GW_METHOD_PUT
        GW_METHOD_DELETE
        GW_METHOD_OPTIONS
        GW_METHOD_PATCH
        GW_METHOD_CONNECT
        GW_METHOD_TRACE

    ctypedef struct gw_span:
        uint32_t off
        uint32_t len

    ctypedef struct gw_header:
        gw_span name
        gw_span value
        uint32_t flags

    ctypedef struct gw_limits:
        uint32_t max_request_line
        uint32_t max_head_size
        uint32_t max_headers

    ctypedef struct gw_request_head:
        uint32_t head_len
        gw_span method
        uint8_t method_id
        uint8_t version_minor
        uint8_t body_kind
        uint8_t keep_alive
        uint8_t expect_continue
        uint8_t upgrade
        uint8_t has_host
        uint64_t content_length
        gw_span target
        gw_span path
        gw_span query
        gw_span host
        uint32_t n_headers
        gw_header headers[128]

    ctypedef struct gw_response_head:
        uint32_t head_len
        uint16_t status
        uint8_t version_minor
        uint8_t body_kind
        uint8_t keep_alive
        uint64_t content_length
        gw_span reason
        uint32_t n_headers
        gw_header headers[128]

    ctypedef struct gw_chunked:
        pass

    int32_t gw_parse_request(const uint8_t *buf, size_t len, const gw_limits *limits,
                             gw_request_head *out, const char **reason) nogil
    int32_t gw_parse_response(const uint8_t *buf, size_t len, int32_t request_was_head,
                              const gw_limits *limits, gw_response_head *out,
                              const char **reason) nogil
    gw_chunked *gw_chunked_new() nogil
    void gw_chunked_free(gw_chunked *scanner) nogil
    void gw_chunked_reset(gw_chunked *scanner) nogil
    int32_t gw_chunked_feed(gw_chunked *scanner, const uint8_t *buf, size_t len,
                            size_t *consumed, uint8_t *done) nogil
    uint64_t gw_chunked_body_bytes(const gw_chunked *scanner) nogil
    int32_t gw_chunked_decode(gw_chunked *scanner, const uint8_t *buf, size_t len, uint8_t *out,
                              size_t *consumed, size_t *out_len, uint8_t *done) nogil
    void gw_abi_sizes(size_t *request_head, size_t *response_head) nogil

    ctypedef struct gw_params:
        pass
    gw_params *gw_params_new() nogil
    void gw_params_free(gw_params *params) nogil
    int64_t gw_router_find(const void *router, const uint8_t *method, size_t method_len,
                           const uint8_t *host, size_t host_len, const uint8_t *path,
                           size_t path_len, gw_params *params) nogil
    const uint8_t *gw_params_path(const gw_params *params, size_t *len, uint8_t *changed) nogil
    uint32_t gw_params_count(const gw_params *params) nogil
    int32_t gw_params_item(const gw_params *params, uint32_t index, const uint8_t **name,
                           size_t *name_len, const uint8_t **value, size_t *value_len) nogil


cdef size_t _abi_req = 0, _abi_resp = 0
gw_abi_sizes(&_abi_req, &_abi_resp)
if _abi_req != sizeof(gw_request_head) or _abi_resp != sizeof(gw_response_head):
    raise ImportError(
        f"gateway._proto: C header out of sync with rust/http "
        f"(request head {sizeof(gw_request_head)} vs {_abi_req}, "
        f"response head {sizeof(gw_response_head)} vs {_abi_resp})")

log = logging.getLogger("gateway.proxy")

# Connection states (client side)
cdef enum:
    C_IDLE = 0        # between requests (keep-alive), nothing buffered
    C_HEAD = 1        # part of a request head received
    C_ACTIVE = 2      # a request is in flight (its body may still be arriving)
    C_CLOSED = 3
    C_LINGER = 4      # answered and half-closed; input is read and dropped until the peer closes
    C_TUNNEL = 5      # upgraded (WebSocket): bytes flow both ways untouched

# Upstream connection states
cdef enum:
    U_CONNECTING = 0
    U_IDLE = 1        # in the pool
    U_HEAD = 2        # request sent (or being sent), waiting for the response head
    U_BODY = 3        # response body streaming
    U_CLOSED = 4
    U_TUNNEL = 5      # upgraded: never returns to the pool

# How a local response treats the connection afterwards
cdef enum:
    KEEP = 0
    CLOSE = 1

# Buffered request bytes above which reading from the client pauses (pipelined requests, a body
# arriving before the upstream connection is ready).
DEF CLIENT_BUFFER_HIGH = 262144
DEF HEAD_SCRATCH = 8192
# No head the writer builds may exceed this (heads are limited to far less by the parsers).
DEF HEAD_BUFFER_MAX = 16777216
DEF LINGER_SECONDS = 2.0
DEF INLINE_BODY_MAX = 16384
# A side's unsent bytes above WRITE_HIGH_WATER pause reading from the other side until they
# drain below WRITE_LOW_WATER: bodies stream through a bounded buffer, never whole.
DEF WRITE_HIGH_WATER = 262144
DEF WRITE_LOW_WATER = 65536

# Router outcome codes (rust/router: NOT_FOUND, METHOD_NOT_ALLOWED, BAD_PATH)
DEF ROUTE_BAD_PATH = -3

cdef inline double now_monotonic() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef dict REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

cpdef str reason_phrase(int status):
    return REASONS.get(status, "Unknown")


cdef inline bint idempotent(int method_id):
    return (method_id == GW_METHOD_GET or method_id == GW_METHOD_HEAD or
            method_id == GW_METHOD_PUT or method_id == GW_METHOD_DELETE or
            method_id == GW_METHOD_OPTIONS or method_id == GW_METHOD_TRACE)


cdef inline gw_span span_of(size_t off, size_t length):
    cdef gw_span span
    span.off = <uint32_t>off
    span.len = <uint32_t>length
    return span


cdef list match_params(gw_params *params):
    """The route's path parameters as (name, value) strings; only routes with parameters pay."""
    cdef list out = []
    cdef uint32_t i
    cdef const uint8_t *name
    cdef const uint8_t *value
    cdef size_t name_len, value_len
    for i in range(gw_params_count(params)):
        gw_params_item(params, i, &name, &name_len, &value, &value_len)
        out.append(((<const char *>name)[:name_len].decode("utf-8", "replace"),
                    (<const char *>value)[:value_len].decode("utf-8", "replace")))
    return out


cdef class HeadBuffer:
    """A growable C buffer used to assemble one head at a time (the build is synchronous, so one
    per worker is enough); ``take()`` copies it into a bytes object, the only allocation.

    Every copy out of a parsed buffer goes through ``add_span``: the span must lie inside the
    buffer it claims to come from, or nothing is copied and ``HeadSpanError`` is raised. No caller
    computes an offset of its own."""
    cdef char *data
    cdef size_t length
    cdef size_t capacity

    def __cinit__(self):
        self.capacity = HEAD_SCRATCH
        self.data = <char *>PyMem_Malloc(self.capacity)
        if self.data == NULL:
            raise MemoryError()
        self.length = 0

    def __dealloc__(self):
        if self.data != NULL:
            PyMem_Free(self.data)

    cdef inline int reserve(self, size_t extra) except -1:
        cdef size_t want = self.length + extra
        cdef size_t capacity = self.capacity
        cdef char *grown
        if want <= capacity:
            return 0
        if want < self.length or want > HEAD_BUFFER_MAX:
            raise HeadSpanError(f"response head of {want} bytes is over the head writer's limit")
        while capacity < want:
            capacity *= 2
        grown = <char *>PyMem_Realloc(self.data, capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = capacity
        return 0

    cdef inline int add(self, const char *src, size_t n) except -1:
        if self.length + n > self.capacity:
            self.reserve(n)
        memcpy(self.data + self.length, src, n)
        self.length += n
        return 0

    cdef inline int add_span(self, const char *base, size_t base_len, gw_span span) except -1:
        """Copies ``base[span]``: the one place a parsed span becomes a copy."""
        if <size_t>span.off > base_len or <size_t>span.len > base_len - <size_t>span.off:
            raise HeadSpanError(f"span {span.off}+{span.len} outside a {base_len}-byte head")
        return self.add(base + span.off, span.len)

    cdef inline int add_bytes(self, bytes b) except -1:
        return self.add(PyBytes_AS_STRING(b), <size_t>PyBytes_GET_SIZE(b))

    cdef inline int add_status_line(self, int status, const char *base, size_t base_len,
                                    gw_span reason) except -1:
        """``HTTP/1.1 NNN reason``: the code from the parser's value, the reason from its span."""
        cdef char code[4]
        if status < 100 or status > 599:
            raise HeadSpanError(f"status {status} is not a three-digit HTTP status")
        code[0] = <char>(48 + status // 100)
        code[1] = <char>(48 + (status // 10) % 10)
        code[2] = <char>(48 + status % 10)
        code[3] = b' '
        self.add("HTTP/1.1 ", 9)
        self.add(code, 4)
        self.add_span(base, base_len, reason)
        return self.add("\r\n", 2)

    cdef inline int add_header(self, const char *name, size_t name_len, const char *value,
                               size_t value_len) except -1:
        self.reserve(name_len + value_len + 4)
        memcpy(self.data + self.length, name, name_len)
        self.length += name_len
        self.data[self.length] = b':'
        self.data[self.length + 1] = b' '
        self.length += 2
        memcpy(self.data + self.length, value, value_len)
        self.length += value_len
        self.data[self.length] = b'\r'
        self.data[self.length + 1] = b'\n'
        self.length += 2
        return 0

    cdef inline int add_header_span(self, const char *name, size_t name_len, const char *base,
                                    size_t base_len, gw_span value) except -1:
        """A header whose name is ours and whose value comes from a parsed buffer."""
        self.add(name, name_len)
        self.add(": ", 2)
        self.add_span(base, base_len, value)
        return self.add("\r\n", 2)

    cdef inline int add_parsed_header(self, const char *base, size_t base_len,
                                      gw_header *e) except -1:
        """A header copied as parsed: name and value both from spans of ``base``."""
        self.add_span(base, base_len, e.name)
        self.add(": ", 2)
        self.add_span(base, base_len, e.value)
        return self.add("\r\n", 2)

    cdef inline bytes take(self):
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.length)
        self.length = 0
        return out


class HeadSpanError(ValueError):
    """A span handed to the head writer does not lie inside its buffer (a parser bug): the
    response is refused instead of copying memory that is not the head's."""


cdef bytes encode_local_response(int status, bytes body, object headers, bint close,
                                 bint head_only):
    """A complete response generated by the gateway (errors, plugin responses)."""
    cdef list parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status).encode())]
    cdef bint has_type = False
    if headers:
        items = headers.items() if hasattr(headers, "items") else headers
        for name, value in items:
            if isinstance(name, str):
                name = name.encode("latin-1")
            if isinstance(value, str):
                value = value.encode("latin-1")
            elif not isinstance(value, bytes):
                value = str(value).encode("latin-1")
            lname = name.lower()
            if lname in (b"content-length", b"connection", b"transfer-encoding"):
                continue
            if lname == b"content-type":
                has_type = True
            parts.append(name + b": " + value + b"\r\n")
    if body and not has_type:
        parts.append(b"Content-Type: text/plain; charset=utf-8\r\n")
    if status >= 200 and status != 204 and status != 304:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
    if not head_only and status != 204 and status != 304:
        parts.append(body)
    return b"".join(parts)


JSON_HEADERS = (("Content-Type", "application/json"),)


cdef bytes error_body(str message):
    return b'{"error_msg":"' + message.replace('"', "'").encode() + b'"}\n'


cdef class Response:
    """A response produced by the gateway or a plugin instead of the upstream's."""
    cdef public int status
    cdef public bytes body
    cdef public object headers

    def __init__(self, int status=200, body=b"", headers=None):
        self.status = status
        if isinstance(body, str):
            body = body.encode()
        self.body = body
        self.headers = headers

    def __repr__(self):
        return f"Response({self.status}, {len(self.body)} bytes)"


# ----------------------------------------------------------------------------------------------
# Compiled configuration objects (built by gateway.proxy.runtime, read on the hot path)
# ----------------------------------------------------------------------------------------------

cdef class UpstreamNode:
    cdef public str host
    cdef public int port
    cdef public int weight
    cdef public bytes host_header        # "host:port" as the Host header for pass_host=node
    cdef public tuple key                # pool key
    cdef int current_weight              # smooth weighted round robin state
    cdef public int active               # requests in flight (least_conn)
    cdef list idle                       # this worker's pooled connections to the node

    def __init__(self, str host, int port, int weight=1):
        self.host = host
        self.port = port
        self.weight = weight
        self.key = (host, port)
        if ":" in host:
            self.host_header = f"[{host}]:{port}".encode()
        else:
            self.host_header = f"{host}:{port}".encode() if port != 80 else host.encode()
        self.current_weight = 0
        self.active = 0
        self.idle = []

    def __repr__(self):
        return f"UpstreamNode({self.host}:{self.port}, weight={self.weight})"


PASS_HOST_PASS = 0
PASS_HOST_NODE = 1
PASS_HOST_REWRITE = 2


cdef class UpstreamGroup:
    cdef public str id
    cdef public list nodes
    cdef public str type
    cdef public int retries
    cdef public double connect_timeout
    cdef public double send_timeout
    cdef public double read_timeout
    cdef public int keepalive_size
    cdef public double keepalive_idle
    cdef public int keepalive_requests
    cdef public int pass_host
    cdef public bytes upstream_host
    cdef int total_weight

    def __init__(self, str id, list nodes, str type="roundrobin", int retries=1,
                 double connect_timeout=6.0, double send_timeout=60.0, double read_timeout=60.0,
                 int keepalive_size=320, double keepalive_idle=60.0, int keepalive_requests=1000,
                 int pass_host=0, bytes upstream_host=b""):
        self.id = id
        self.nodes = [n for n in nodes if (<UpstreamNode>n).weight > 0] or list(nodes)
        self.type = type
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.read_timeout = read_timeout
        self.keepalive_size = keepalive_size
        self.keepalive_idle = keepalive_idle
        self.keepalive_requests = keepalive_requests
        self.pass_host = pass_host
        self.upstream_host = upstream_host
        self.total_weight = sum((<UpstreamNode>n).weight for n in self.nodes)

    cpdef UpstreamNode pick(self, object exclude=None):
        """Smooth weighted round robin (nginx's algorithm): even spread, exact weights."""
        cdef UpstreamNode node, best = None
        cdef int n = len(self.nodes)
        if n == 1:
            node = <UpstreamNode>self.nodes[0]
            if exclude is None or node not in exclude:
                return node
            return None
        for node in self.nodes:
            if exclude is not None and node in exclude:
                continue
            node.current_weight += node.weight
            if best is None or node.current_weight > best.current_weight:
                best = node
        if best is not None:
            best.current_weight -= self.total_weight
        return best


cdef class RouteEntry:
    cdef public int index
    cdef public str id
    cdef public UpstreamGroup upstream
    cdef public tuple rewrite
    cdef public tuple access
    cdef public tuple before_proxy
    cdef public tuple header_filter
    cdef public tuple body_filter
    cdef public tuple log
    cdef public tuple request_hooks      # rewrite then access, in order
    cdef public bint has_plugins
    cdef public bint websocket           # enable_websocket: Upgrade requests are tunnelled
    cdef public dict plugins

    def __init__(self, int index, str id, UpstreamGroup upstream=None, tuple rewrite=(),
                 tuple access=(), tuple before_proxy=(), tuple header_filter=(),
                 tuple body_filter=(), tuple log=(), dict plugins=None, bint websocket=False):
        self.index = index
        self.id = id
        self.upstream = upstream
        self.rewrite = rewrite
        self.access = access
        self.before_proxy = before_proxy
        self.header_filter = header_filter
        self.body_filter = body_filter
        self.log = log
        self.plugins = plugins or {}
        self.request_hooks = rewrite + access
        self.has_plugins = bool(self.request_hooks)
        self.websocket = websocket


cdef class Runtime:
    """One compiled configuration version; requests keep the one they started with."""
    cdef public int version
    cdef public object router
    cdef const void *router_handle        # the compiled router behind `router`, for gw_router_find
    cdef public list routes
    cdef gw_limits limits
    cdef public double header_timeout
    cdef public double body_timeout
    cdef public double keepalive_timeout
    cdef public double send_timeout
    cdef public uint64_t max_body
    cdef public bint timed                # some route has log hooks: measure latencies

    def __init__(self, int version, object router, list routes, int max_request_line=8192,
                 int max_header_size=32768, int max_headers=100, double header_timeout=10.0,
                 double body_timeout=60.0, double keepalive_timeout=60.0,
                 double send_timeout=60.0, uint64_t max_body=0):
        self.version = version
        self.router = router
        self.router_handle = <const void *><size_t>router._handle
        self.routes = routes
        self.limits.max_request_line = max_request_line
        self.limits.max_head_size = max_header_size
        self.limits.max_headers = min(max_headers, GW_MAX_HEADERS)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.send_timeout = send_timeout
        self.max_body = max_body
        self.timed = any((<RouteEntry>r).log for r in routes)


# ----------------------------------------------------------------------------------------------
# The worker's server state
# ----------------------------------------------------------------------------------------------

cdef class Server:
    cdef public object loop
    cdef public Runtime runtime
    cdef set clients
    cdef dict pools                       # node key -> list of idle UpstreamConnection
    cdef set upstreams                    # every live upstream connection
    cdef HeadBuffer scratch
    cdef gw_params *match_params           # router scratch, reused by every request
    cdef public bint draining
    cdef object sweeper
    cdef public double sweep_interval
    cdef public object on_log             # optional callable(ctx) for the access log
    cdef public unsigned long long requests_total
    cdef public unsigned long long connections_total
    cdef public double clock              # monotonic time of the last sweep: deadlines use it
    cdef public str scheme

    def __cinit__(self):
        self.match_params = gw_params_new()

    def __dealloc__(self):
        if self.match_params != NULL:
            gw_params_free(self.match_params)
            self.match_params = NULL

    def __init__(self, loop, Runtime runtime, double sweep_interval=0.25):
        self.loop = loop
        self.runtime = runtime
        self.clients = set()
        self.pools = {}
        self.upstreams = set()
        self.scratch = HeadBuffer()
        self.draining = False
        self.sweep_interval = sweep_interval
        self.on_log = None
        self.requests_total = 0
        self.connections_total = 0
        self.clock = now_monotonic()
        self.scheme = "http"
        self.sweeper = loop.call_later(sweep_interval, self._sweep)
        self.adopt_pools(runtime)

    def protocol_factory(self):
        return ClientConnection(self)

    def set_runtime(self, Runtime runtime):
        self.adopt_pools(runtime)
        self.runtime = runtime

    cdef void adopt_pools(self, Runtime runtime):
        """Nodes of a new config version share the idle pools of equal nodes (same host and
        port) of the previous one, so a reload keeps the warm upstream connections."""
        cdef RouteEntry route
        cdef UpstreamNode node
        for route in runtime.routes:
            if route.upstream is None:
                continue
            for node in route.upstream.nodes:
                node.idle = self.pools.setdefault(node.key, node.idle)

    @property
    def stats(self):
        return {"requests": self.requests_total, "connections": self.connections_total,
                "clients": len(self.clients), "upstream_connections": len(self.upstreams)}

    @property
    def active_clients(self):
        return len(self.clients)

    @property
    def in_flight(self):
        cdef ClientConnection c
        return sum(1 for c in self.clients if c.state == C_ACTIVE)

    def start_draining(self):
        """Stop keeping connections alive: idle ones close now, busy ones after their response."""
        cdef ClientConnection c
        self.draining = True
        for c in list(self.clients):
            if c.state == C_IDLE:
                c.close()

    def close_all(self):
        cdef ClientConnection c
        cdef UpstreamConnection u
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for c in list(self.clients):
            c.close()
        for u in list(self.upstreams):
            u.close()

    def _sweep(self):
        """Enforces every timeout from one periodic pass instead of a timer per request."""
        cdef double now = now_monotonic()
        cdef ClientConnection c
        cdef UpstreamConnection u
        self.clock = now
        try:
            for c in list(self.clients):
                if c.deadline and now >= c.deadline:
                    c.on_timeout(now)
                if c.send_deadline and now >= c.send_deadline and c.state != C_CLOSED:
                    c.on_send_timeout(now)
            for u in list(self.upstreams):
                if u.deadline and now >= u.deadline:
                    u.on_timeout(now)
        except Exception:
            log.exception("timeout sweep failed")
        finally:
            if self.sweeper is not None:
                self.sweeper = self.loop.call_later(self.sweep_interval, self._sweep)

    cdef UpstreamConnection pool_get(self, UpstreamNode node):
        cdef list idle = node.idle
        cdef UpstreamConnection u
        while idle:
            u = <UpstreamConnection>idle.pop()
            if u.state == U_IDLE and not u.transport.is_closing():
                return u
        return None

    cdef void pool_put(self, UpstreamConnection u, UpstreamGroup group):
        cdef list idle
        if (self.draining or u.requests >= group.keepalive_requests or group.keepalive_size <= 0
                or u.transport is None or u.transport.is_closing()):
            u.close()
            return
        idle = u.node.idle
        if len(idle) >= group.keepalive_size:
            u.close()
            return
        u.state = U_IDLE
        u.ex = None
        u.idle_timeout = group.keepalive_idle
        u.deadline = now_monotonic() + group.keepalive_idle
        if u.reading_paused:
            u.reading_paused = False
            u.transport.resume_reading()
        idle.append(u)

    cdef void pool_forget(self, UpstreamConnection u):
        cdef list idle = u.node.idle if u.node is not None else None
        if idle:
            try:
                idle.remove(u)
            except ValueError:
                pass


# ----------------------------------------------------------------------------------------------
# Upstream side
# ----------------------------------------------------------------------------------------------

cdef class UpstreamConnection:
    cdef Server server
    cdef object transport
    cdef public UpstreamNode node
    cdef Exchange ex
    cdef gw_response_head head
    cdef gw_chunked *chunked
    cdef bytearray pending
    cdef public int state
    cdef int body_kind
    cdef uint64_t remaining
    cdef public int requests
    cdef double deadline
    cdef double idle_timeout
    cdef bint got_response_bytes
    cdef bint reading_paused
    cdef bint reused
    cdef object write                     # transport.write, bound once per connection

    def __cinit__(self):
        self.chunked = gw_chunked_new()

    def __dealloc__(self):
        if self.chunked != NULL:
            gw_chunked_free(self.chunked)
            self.chunked = NULL

    def __init__(self, Server server, UpstreamNode node):
        self.server = server
        self.node = node
        self.state = U_CONNECTING
        self.pending = bytearray()
        self.requests = 0
        self.deadline = 0
        self.reading_paused = False

    # asyncio protocol callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.server.upstreams.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc):
        cdef Exchange ex = self.ex
        cdef int previous = self.state
        self.state = U_CLOSED
        self.server.upstreams.discard(self)
        if previous == U_IDLE:
            self.server.pool_forget(self)
        self.ex = None
        if ex is None:
            return
        if previous == U_TUNNEL:
            ex.end_tunnel()
        elif previous == U_BODY and self.body_kind == GW_BODY_UNTIL_CLOSE:
            ex.on_response_complete(self, False)
        else:
            ex.on_upstream_lost(self, self.got_response_bytes, exc)

    def eof_received(self):
        return False

    def pause_writing(self):
        if self.ex is not None:
            self.ex.client.pause_reading_for_upstream()

    def resume_writing(self):
        if self.ex is not None:
            self.ex.client.resume_reading_for_upstream()

    def data_received(self, bytes data):
        cdef Exchange ex = self.ex
        if ex is None:
            # Bytes from an idle pooled connection: the peer broke the protocol; drop it.
            self.close()
            return
        self.got_response_bytes = True
        self.deadline = now_monotonic() + ex.read_timeout
        if self.state == U_TUNNEL:
            ex.client.write_body(data)
            return
        if self.state == U_BODY:
            self.forward_body(data)
        else:
            self.on_head_data(data)

    cdef void on_head_data(self, bytes data):
        cdef Exchange ex = self.ex
        cdef const char *reason = NULL
        cdef int32_t n
        cdef bytes buf
        while True:
            if self.pending:
                self.pending += data
                buf = bytes(self.pending)
                self.pending.clear()
            else:
                buf = data
            n = gw_parse_response(<const uint8_t *>PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf),
                                  ex.is_head, &ex.runtime.limits, &self.head, &reason)
            if n == 0:
                self.pending += buf
                return
            if n < 0:
                log.warning("invalid response from upstream %s:%d: %s", self.node.host,
                            self.node.port, (<bytes>reason).decode(errors="replace"))
                self.state = U_CLOSED
                self.transport.abort()
                ex.on_upstream_failed(502, "invalid response from upstream")
                return
            if self.head.status == 101:
                if ex.upgrading:
                    self.state = U_TUNNEL
                    try:
                        ex.on_upgraded(self, buf, n)
                    except HeadSpanError as exc:
                        self.refuse_head(ex, exc)
                    return
                self.state = U_CLOSED
                self.transport.abort()
                ex.on_upstream_failed(502, "upstream switched protocols unasked")
                return
            if 100 <= self.head.status < 200:
                ex.relay_informational(buf, n)
                if n == PyBytes_GET_SIZE(buf):
                    return
                data = buf[n:]
                continue
            break
        self.state = U_BODY
        self.body_kind = self.head.body_kind
        self.remaining = self.head.content_length
        if self.body_kind == GW_BODY_CHUNKED:
            gw_chunked_reset(self.chunked)
        cdef size_t rest = PyBytes_GET_SIZE(buf) - n
        cdef size_t inline_body = 0
        if self.body_kind == GW_BODY_LENGTH and rest and rest <= INLINE_BODY_MAX \
                and not ex.route.body_filter:
            # A small body that arrived with the head is copied right behind it: one buffer,
            # one write to the client.
            inline_body = rest if rest < self.remaining else self.remaining
        try:
            ex.on_response_head(self, buf, n, inline_body)
        except HeadSpanError as exc:
            self.refuse_head(ex, exc)
            return
        if self.ex is None or self.state != U_BODY:
            return
        self.remaining -= inline_body
        if self.body_kind == GW_BODY_NONE or (self.body_kind == GW_BODY_LENGTH and self.remaining == 0):
            if rest > inline_body:
                self.head.keep_alive = 0  # extra bytes after a complete response: do not reuse
            ex.on_response_complete(self, self.head.keep_alive)
            return
        if rest > inline_body:
            self.forward_body(buf[n + inline_body:])  # goes out with the held head in one write
        else:
            ex.client.flush_head()

    cdef void refuse_head(self, Exchange ex, object exc):
        log.error("cannot relay the response head of upstream %s:%d: %s", self.node.host,
                  self.node.port, exc)
        self.state = U_CLOSED
        self.transport.abort()
        ex.response_started = False
        ex.client.held_head = None
        ex.on_upstream_failed(502, "invalid response from upstream")

    cdef void forward_body(self, bytes data):
        cdef Exchange ex = self.ex
        cdef size_t size = PyBytes_GET_SIZE(data)
        cdef size_t consumed = 0
        cdef uint8_t done = 0
        cdef int32_t rc
        if self.body_kind == GW_BODY_LENGTH:
            if size < self.remaining:
                self.remaining -= size
                ex.send_response_body(data)
                return
            if size > self.remaining:
                data = data[:self.remaining]
                self.head.keep_alive = 0
            self.remaining = 0
            ex.send_response_body(data)
            if self.ex is not None:
                ex.on_response_complete(self, self.head.keep_alive)
        elif self.body_kind == GW_BODY_CHUNKED:
            if ex.chunked_to_client:
                self.forward_dechunked(data)
                return
            rc = gw_chunked_feed(self.chunked, <const uint8_t *>PyBytes_AS_STRING(data), size,
                                 &consumed, &done)
            if rc != 0:
                log.warning("invalid chunked body from upstream %s:%d", self.node.host,
                            self.node.port)
                self.state = U_CLOSED
                self.transport.abort()
                ex.abort_client()
                return
            if consumed < size:
                data = data[:consumed]
                self.head.keep_alive = 0
            ex.send_response_body(data)
            if done and self.ex is not None:
                ex.on_response_complete(self, self.head.keep_alive)
        else:
            ex.send_response_body(data)

    cdef void forward_dechunked(self, bytes data):
        """Chunked response to an HTTP/1.0 client: send the payload only (it reads until close)."""
        cdef Exchange ex = self.ex
        cdef size_t size = PyBytes_GET_SIZE(data)
        cdef size_t consumed = 0, out_len = 0
        cdef uint8_t done = 0
        cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
        cdef int32_t rc = gw_chunked_decode(self.chunked, <const uint8_t *>PyBytes_AS_STRING(data),
                                            size, <uint8_t *>PyBytes_AS_STRING(out), &consumed,
                                            &out_len, &done)
        if rc != 0:
            self.state = U_CLOSED
            self.transport.abort()
            ex.abort_client()
            return
        if out_len:
            ex.send_response_body(out[:out_len])
        if done and self.ex is not None:
            ex.on_response_complete(self, self.head.keep_alive and consumed == size)

    cdef void on_timeout(self, double now):
        if self.state == U_IDLE:
            self.close()
        elif self.state == U_TUNNEL:
            self.transport.abort()  # an idle tunnel ends quietly; connection_lost closes both
        elif self.ex is not None:
            ex = self.ex
            if self.state == U_BODY:
                phase = "reading response body from"
            elif self.got_response_bytes or (<Exchange>ex).body_done:
                phase = "reading response header from"
            else:
                phase = "sending request to"
            log.warning("upstream timed out while %s upstream %s:%d", phase, self.node.host,
                        self.node.port)
            self.ex = None
            self.state = U_CLOSED
            self.transport.abort()
            (<Exchange>ex).on_upstream_failed(504, "upstream timed out")
        else:
            self.close()

    cdef void send(self, Exchange ex, list parts, bint body_done):
        self.ex = ex
        self.state = U_HEAD
        self.got_response_bytes = False
        self.pending.clear()
        self.requests += 1
        self.deadline = now_monotonic() + (ex.read_timeout if body_done else ex.group.send_timeout)
        if len(parts) == 1:
            self.write(parts[0])
        else:
            self.transport.writelines(parts)

    cdef void close(self):
        if self.state != U_CLOSED:
            self.state = U_CLOSED
            self.ex = None
            self.server.pool_forget(self)
            if self.transport is not None:
                self.transport.close()

    def pause_reading_for_client(self):
        if not self.reading_paused and self.transport is not None and self.state != U_CLOSED:
            self.reading_paused = True
            self.transport.pause_reading()
            # The client is the slow side now: its send_timeout runs, not our read timeout.
            self.deadline = 0

    def resume_reading_for_client(self):
        if self.reading_paused and self.transport is not None and self.state != U_CLOSED:
            self.reading_paused = False
            self.transport.resume_reading()
            if self.ex is not None:
                self.deadline = now_monotonic() + self.ex.read_timeout


# ----------------------------------------------------------------------------------------------
# One proxied request: also the context object plugins receive
# ----------------------------------------------------------------------------------------------

@cython.freelist(64)
cdef class Exchange:
    cdef ClientConnection client
    cdef public Runtime runtime
    cdef public RouteEntry route
    cdef bytes data                      # buffer the request head's spans point into
    cdef gw_request_head *head
    cdef public int method_id
    cdef public bint is_head
    cdef public bint keep_alive
    cdef int version_minor
    cdef int body_kind                   # request body framing
    cdef uint64_t body_remaining
    cdef bint body_done
    cdef uint64_t body_bytes
    cdef list body_backlog                 # request body received before the upstream is ready
    cdef size_t backlog_size
    cdef UpstreamConnection upstream
    cdef public UpstreamNode node
    cdef UpstreamGroup group
    cdef int attempts
    cdef set failed_nodes
    cdef bint retried_stale
    cdef public bint response_started
    cdef bint response_done
    cdef bint chunked_to_client          # upstream chunks are decoded before the client sees them
    cdef bint filtering                  # body_filter hooks see (and may change) the payload
    cdef public bint upgrading           # a WebSocket upgrade is asked of the upstream
    cdef public int status
    cdef public bint timed
    cdef public double start_time
    cdef public double upstream_start
    cdef public double upstream_latency
    cdef public uint64_t bytes_sent
    cdef double read_timeout
    cdef bint expect_continue
    cdef object raw_params               # [(name, value)] from the router
    cdef dict _params
    cdef bytes normalized_path
    cdef dict _vars                      # per-request state shared between plugins
    cdef public object consumer
    cdef bint consumer_attached          # the access chain must take in the consumer's plugins
    cdef tuple consumer_before_proxy
    cdef tuple consumer_header_filter
    cdef tuple consumer_log
    cdef UpstreamGroup upstream_override # set by a plugin (traffic-split) before proxying
    cdef bytes upstream_host_override
    cdef bytes upstream_method            # set by a plugin (proxy-rewrite) to change the method
    cdef public list extra_response_headers  # (name, value) bytes added to whatever answers
    cdef public uint64_t body_limit      # per-request cap on the request body (0: the runtime's)
    cdef object _headers
    cdef dict _args
    cdef dict _cookies
    cdef public list upstream_header_set   # (name, value) set by plugins before proxying
    cdef public set upstream_header_remove
    cdef public bytes upstream_path        # set by plugins to rewrite the path (+query)
    cdef public object response_headers    # header_filter view: list of [name, value]
    cdef object task

    # -- plugin-facing accessors (built lazily; nothing here runs without a plugin) --
    @property
    def vars(self):
        """A dict for plugins to share state within this request."""
        if self._vars is None:
            self._vars = {}
        return self._vars

    @property
    def params(self):
        """Path parameters of the matched route (``/users/:id`` -> ``{"id": ...}``)."""
        if self._params is None:
            self._params = dict(self.raw_params) if self.raw_params else {}
        return self._params

    @property
    def upstream(self):
        """The upstream group the request goes to (a plugin's choice, else the route's)."""
        if self.upstream_override is not None:
            return self.upstream_override
        return self.route.upstream if self.route is not None else None

    @property
    def request_bytes(self):
        """Bytes received for this request: head and body."""
        return self.head.head_len + self.body_bytes

    @property
    def request_body_bytes(self):
        return self.body_bytes

    @property
    def elapsed(self):
        """Seconds since the request head arrived."""
        return now_monotonic() - self.start_time

    def attach_consumer(self, consumer):
        """Called by an authentication plugin: the request belongs to ``consumer`` (a
        gateway.plugins.consumers.ConsumerEntry). Its non-credential plugins join the chain."""
        self.consumer = consumer
        hooks = getattr(consumer, "phase_hooks", None)
        if hooks:
            self.consumer_attached = bool(hooks["access"])
            self.consumer_before_proxy = hooks["before_proxy"] or None
            self.consumer_header_filter = hooks["header_filter"] or None
            self.consumer_log = hooks["log"] or None

    def set_upstream(self, UpstreamGroup group):
        """Proxies this request to ``group`` instead of the route's upstream (rewrite/access)."""
        self.upstream_override = group

    def set_upstream_method(self, method):
        """The method sent upstream (proxy-rewrite's ``method``); the client's is unchanged."""
        m = method.encode("ascii") if isinstance(method, str) else bytes(method)
        if not m or not m.isalpha() or not m.isupper():
            raise ValueError(f"invalid HTTP method {method!r}")
        self.upstream_method = m

    def set_upstream_host(self, host):
        """The Host header sent upstream, whatever the upstream's pass_host says."""
        self.upstream_host_override = host.encode("latin-1") if isinstance(host, str) else host

    def add_response_header(self, name, value):
        """Adds a header to the response this request gets, proxied or answered by the gateway
        (e.g. rate-limit headers set in ``access``). Call before the response head is sent."""
        if self.extra_response_headers is None:
            self.extra_response_headers = []
        self.extra_response_headers.append(
            (name.encode("latin-1") if isinstance(name, str) else name,
             value.encode("latin-1") if isinstance(value, str) else value))

    def set_body_limit(self, uint64_t limit):
        """Caps this request's body: a larger one is answered 413 (or cut if already answered)."""
        self.body_limit = limit

    @property
    def method(self):
        return self.data[self.head.method.off:self.head.method.off + self.head.method.len].decode("latin-1")

    @property
    def path(self):
        if self.normalized_path is not None:
            return self.normalized_path.decode("latin-1")
        return self.data[self.head.path.off:self.head.path.off + self.head.path.len].decode("latin-1")

    @property
    def raw_target(self):
        return self.data[self.head.target.off:self.head.target.off + self.head.target.len]

    @property
    def query_string(self):
        return self.data[self.head.query.off:self.head.query.off + self.head.query.len].decode("latin-1")

    @property
    def args(self):
        """Query arguments (the last value of a repeated one), parsed on first use."""
        if self._args is None:
            self._args = {k: v[len(v) - 1] for k, v in
                          parse_qs(self.query_string, keep_blank_values=True).items()}
        return self._args

    @property
    def cookies(self):
        """Request cookies by name, parsed from the Cookie header(s) on first use."""
        cdef dict jar
        if self._cookies is None:
            jar = {}
            for part in self.headers.get("cookie", "").replace(",", ";").split(";"):
                name, sep, value = part.strip().partition("=")
                if sep and name and name not in jar:
                    jar[name] = value.strip().strip('"')
            self._cookies = jar
        return self._cookies

    @property
    def host(self):
        if not self.head.has_host:
            return ""
        return self.data[self.head.host.off:self.head.host.off + self.head.host.len].decode("latin-1")

    @property
    def client_ip(self):
        return self.client.client_ip.decode()

    @property
    def client_port(self):
        return self.client.client_port

    @property
    def route_id(self):
        return self.route.id if self.route is not None else None

    @property
    def http_version(self):
        return "1.1" if self.version_minor == 1 else "1.0"

    @property
    def headers(self):
        """Request headers as a case-insensitive read-only mapping (built on first use)."""
        cdef dict h
        cdef uint32_t i
        cdef gw_header *e
        if self._headers is None:
            h = {}
            for i in range(self.head.n_headers):
                e = &self.head.headers[i]
                name = self.data[e.name.off:e.name.off + e.name.len].decode("latin-1").lower()
                value = self.data[e.value.off:e.value.off + e.value.len].decode("latin-1")
                if name in h:
                    h[name] = h[name] + ", " + value
                else:
                    h[name] = value
            self._headers = h
        return self._headers

    def header(self, str name, default=None):
        return self.headers.get(name.lower(), default)

    def set_upstream_header(self, name, value):
        if self.upstream_header_set is None:
            self.upstream_header_set = []
        if self.upstream_header_remove is None:
            self.upstream_header_remove = set()
        n = name.encode("latin-1") if isinstance(name, str) else name
        v = value.encode("latin-1") if isinstance(value, str) else value
        self.upstream_header_remove.add(n.lower())
        self.upstream_header_set.append((n, v))

    def remove_upstream_header(self, name):
        if self.upstream_header_remove is None:
            self.upstream_header_remove = set()
        n = name.encode("latin-1") if isinstance(name, str) else name
        self.upstream_header_remove.add(n.lower())

    def set_upstream_uri(self, uri):
        self.upstream_path = uri.encode("latin-1") if isinstance(uri, str) else uri

    def set_response_header(self, name, value):
        """For header_filter: replaces (or adds) a response header."""
        lname = name.lower()
        if self.response_headers is None:
            return
        self.response_headers[:] = [h for h in self.response_headers if h[0].lower() != lname]
        self.response_headers.append([name, value])

    def remove_response_header(self, name):
        lname = name.lower()
        if self.response_headers is not None:
            self.response_headers[:] = [h for h in self.response_headers if h[0].lower() != lname]

    def __repr__(self):
        return f"<request {self.method} {self.path} route={self.route_id}>"

    # -- request side --

    cdef void start(self):
        if self.route.has_plugins:
            self.run_request_phases(self.route.request_hooks)
        else:
            self.proceed_upstream()

    cdef void run_request_phases(self, tuple hooks):
        cdef Py_ssize_t i
        try:
            for i in range(len(hooks)):
                result = hooks[i](self)
                if result is not None:
                    if asyncio.iscoroutine(result):
                        self.task = asyncio.ensure_future(
                            self.run_phases_async(result, hooks[i + 1:]))
                        return
                    self.respond_plugin(result)
                    return
                if self.consumer_attached:
                    self.consumer_attached = False
                    self.run_request_phases(self.consumer.merge_access(hooks[i + 1:]))
                    return
        except Exception:
            log.exception("plugin failed on route %s", self.route.id)
            self.respond_error(500, "plugin error")
            return
        self.proceed_upstream()

    async def run_phases_async(self, first, tuple rest):
        """The slow path, taken only when a hook is a coroutine: finishes the phases in order."""
        cdef Py_ssize_t i = 0
        try:
            result = await first
            if result is None and self.consumer_attached:
                self.consumer_attached = False
                rest = self.consumer.merge_access(rest)
            while result is None and i < len(rest):
                result = rest[i](self)
                i += 1
                if asyncio.iscoroutine(result):
                    result = await result
                if result is None and self.consumer_attached:
                    self.consumer_attached = False
                    rest = self.consumer.merge_access(rest[i:])
                    i = 0
        except Exception:
            log.exception("plugin failed on route %s", self.route.id)
            self.respond_error(500, "plugin error")
            return
        if self.client.state == C_CLOSED or self.client.ex is not self:
            return
        if result is not None:
            self.respond_plugin(result)
        else:
            self.proceed_upstream()

    cdef void respond_plugin(self, object result):
        cdef Response r
        if isinstance(result, Response):
            r = <Response>result
            self.respond_local(r.status, r.body, r.headers, KEEP)
        elif isinstance(result, tuple):
            status = result[0]
            body = result[1] if len(result) > 1 else b""
            headers = result[2] if len(result) > 2 else None
            self.respond_local(int(status), body.encode() if isinstance(body, str) else body, headers, KEEP)
        elif isinstance(result, int):
            self.respond_local(result, b"", None, KEEP)
        else:
            log.error("plugin on route %s returned %r; expected a Response", self.route.id, result)
            self.respond_error(500, "plugin error")

    cdef void proceed_upstream(self):
        cdef UpstreamGroup group = self.upstream_override
        if self.body_limit and (
                (self.body_kind == GW_BODY_LENGTH and self.head.content_length > self.body_limit)
                or (self.body_kind == GW_BODY_CHUNKED
                    and gw_chunked_body_bytes(self.client.chunked) > self.body_limit)):
            # chunked bytes that came with the head were counted before a plugin set the limit
            self.keep_alive = False
            self.respond_error(413, "request body too large")
            return
        if group is None:
            group = self.route.upstream
        if group is None:
            self.respond_error(502, "no upstream configured for route " + self.route.id)
            return
        self.group = group
        self.read_timeout = group.read_timeout
        self.connect_to_upstream()

    cdef void connect_to_upstream(self):
        cdef UpstreamGroup group = self.group
        cdef UpstreamNode node = group.pick(self.failed_nodes)
        cdef UpstreamConnection u
        if node is None:
            self.respond_error(502, "no upstream node available")
            return
        self.node = node
        self.attempts += 1
        if self.expect_continue:
            self.expect_continue = False
            self.client.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        u = self.client.server.pool_get(node)
        if u is not None:
            u.reused = True
            self.send_request(u)
        else:
            self.task = asyncio.ensure_future(self.open_connection(node))

    async def open_connection(self, UpstreamNode node):
        cdef Server server = self.client.server
        cdef UpstreamConnection u = UpstreamConnection(server, node)
        cdef int status = 502
        try:
            await asyncio.wait_for(
                server.loop.create_connection(lambda: u, node.host, node.port),
                self.group.connect_timeout)
        except asyncio.TimeoutError:
            status = 504
            u.close()
        except (OSError, asyncio.CancelledError) as exc:
            u.close()
            if isinstance(exc, asyncio.CancelledError):
                return
        else:
            if self.client.state == C_CLOSED:
                u.state = U_IDLE
                server.pool_put(u, self.group)
                return
            u.reused = False
            self.send_request(u)
            return
        log.warning("cannot connect to upstream %s:%d (%s)", node.host, node.port,
                    "timeout" if status == 504 else "refused or unreachable")
        self.retry_or_fail(status, "upstream connect " + ("timed out" if status == 504 else "failed"))

    cdef void retry_or_fail(self, int status, str message):
        if self.client.state == C_CLOSED:
            return
        if self.attempts <= self.group.retries and len(self.group.nodes) > 0:
            if self.failed_nodes is None:
                self.failed_nodes = set()
            self.failed_nodes.add(self.node)
            if len(self.failed_nodes) >= len(self.group.nodes):
                self.failed_nodes = None  # every node failed once: allow another round
            self.connect_to_upstream()
            return
        self.respond_error(status, message)

    cdef void send_request(self, UpstreamConnection u):
        cdef list parts
        self.upstream = u
        if self.route.before_proxy or self.consumer_before_proxy is not None:
            try:
                for hook in self.route.before_proxy:
                    hook(self)
                if self.consumer_before_proxy is not None:
                    for hook in self.consumer_before_proxy:
                        hook(self)
            except Exception:
                log.exception("plugin failed on route %s", self.route.id)
                u.state = U_IDLE
                self.client.server.pool_put(u, self.group)
                self.upstream = None
                self.respond_error(500, "plugin error")
                return
        if self.timed:
            self.upstream_start = now_monotonic()
        parts = [self.build_upstream_head()]
        if self.body_backlog:
            parts.extend(self.body_backlog)
            self.body_backlog = None
            self.backlog_size = 0
        u.send(self, parts, self.body_done)
        if self.client.reading_paused_backlog:
            self.client.reading_paused_backlog = False
            self.client.update_reading()

    cdef bytes build_upstream_head(self):
        cdef HeadBuffer hb = self.client.server.scratch
        cdef const char *d = PyBytes_AS_STRING(self.data)
        cdef size_t dlen = <size_t>PyBytes_GET_SIZE(self.data)
        cdef gw_request_head *h = self.head
        cdef uint32_t i
        cdef gw_header *e
        cdef uint32_t skip = GW_HF_HOP_BY_HOP | GW_HF_HOST | GW_HF_X_FORWARDED_FOR | \
            GW_HF_X_FORWARDED_PROTO | GW_HF_X_FORWARDED_HOST | GW_HF_X_REAL_IP | GW_HF_EXPECT
        cdef uint32_t xff[16]
        cdef int n_xff = 0, k
        cdef bint custom = self.upstream_header_remove is not None
        cdef ClientConnection client = self.client
        cdef UpstreamGroup group = self.group
        hb.length = 0
        # request line; the path is the normalised one the router matched
        if self.upstream_method is not None:
            hb.add_bytes(self.upstream_method)
        else:
            hb.add_span(d, dlen, h.method)
        hb.add(" ", 1)
        if self.upstream_path is not None:
            hb.add_bytes(self.upstream_path)
        else:
            if self.normalized_path is not None:
                hb.add_bytes(self.normalized_path)
            elif h.path.len:
                hb.add_span(d, dlen, h.path)
            else:
                hb.add("/", 1)  # absolute-form target without a path
            if h.query.len:
                hb.add("?", 1)
                hb.add_span(d, dlen, h.query)
        hb.add(" HTTP/1.1\r\n", 11)
        if self.upstream_host_override is not None:
            hb.add_header("Host", 4, PyBytes_AS_STRING(self.upstream_host_override),
                          PyBytes_GET_SIZE(self.upstream_host_override))
        elif group.pass_host == PASS_HOST_PASS and h.has_host:
            hb.add_header_span("Host", 4, d, dlen, h.host)
        elif group.pass_host == PASS_HOST_REWRITE:
            hb.add_header("Host", 4, PyBytes_AS_STRING(group.upstream_host),
                          PyBytes_GET_SIZE(group.upstream_host))
        else:
            hb.add_header("Host", 4, PyBytes_AS_STRING(self.node.host_header),
                          PyBytes_GET_SIZE(self.node.host_header))
        for i in range(h.n_headers):
            e = &h.headers[i]
            if e.flags & skip:
                if (e.flags & GW_HF_X_FORWARDED_FOR) and not (e.flags & GW_HF_HOP_BY_HOP) \
                        and n_xff < 16:
                    xff[n_xff] = i
                    n_xff += 1
                continue
            if custom and self.data[e.name.off:e.name.off + e.name.len].lower() in self.upstream_header_remove:
                continue
            hb.add_parsed_header(d, dlen, e)
        # X-Forwarded-For keeps the chain (earlier proxies' addresses), then adds the client's
        hb.add("X-Forwarded-For: ", 17)
        for k in range(n_xff):
            e = &h.headers[xff[k]]
            if e.value.len:
                hb.add_span(d, dlen, e.value)
                hb.add(", ", 2)
        hb.add_bytes(client.client_ip)
        hb.add("\r\n", 2)
        hb.add_header("X-Real-IP", 9, PyBytes_AS_STRING(client.client_ip),
                      PyBytes_GET_SIZE(client.client_ip))
        hb.add("X-Forwarded-Proto: http\r\n", 25)
        if h.has_host:
            hb.add_header_span("X-Forwarded-Host", 16, d, dlen, h.host)
        if self.upstream_header_set is not None:
            for name, value in self.upstream_header_set:
                hb.add_header(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                              PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        if self.body_kind == GW_BODY_CHUNKED:
            self.add_transfer_encoding(hb, d, dlen)
        elif self.upstream_method is not None and self.body_kind == GW_BODY_NONE and \
                self.upstream_method in (b"POST", b"PUT", b"PATCH"):
            # a bodiless request turned into one that normally has a body: say it is empty
            hb.add("Content-Length: 0\r\n", 19)
        if self.upgrading:
            for i in range(h.n_headers):
                e = &h.headers[i]
                if e.flags & GW_HF_UPGRADE:
                    hb.add_header_span("Upgrade", 7, d, dlen, e.value)
            hb.add("Connection: upgrade\r\n", 21)
        hb.add("\r\n", 2)
        return hb.take()

    cdef int add_transfer_encoding(self, HeadBuffer hb, const char *d, size_t dlen) except -1:
        """Transfer-Encoding is hop-by-hop, but codings the client applied before the final
        ``chunked`` (gzip, chunked) are the upstream's to undo: forward the whole list."""
        cdef gw_request_head *h = self.head
        cdef uint32_t i
        cdef gw_header *e
        cdef int seen = 0
        for i in range(h.n_headers):
            e = &h.headers[i]
            if not (e.flags & GW_HF_TRANSFER_ENCODING):
                continue
            if seen == 0:
                hb.add("Transfer-Encoding: ", 19)
            else:
                hb.add(", ", 2)
            hb.add_span(d, dlen, e.value)
            seen += 1
        return hb.add("\r\n", 2)

    cdef void on_request_body(self, bytes data):
        """Body bytes of this request from the client (already cut at the message end)."""
        self.body_bytes += PyBytes_GET_SIZE(data)
        if self.upstream is not None and self.upstream.state != U_CLOSED and self.upstream.ex is self:
            self.upstream.write(data)
            if not self.upstream.got_response_bytes:
                self.upstream.deadline = now_monotonic() + (
                    self.read_timeout if self.body_done else self.group.send_timeout)
        elif not self.response_done:
            if self.body_backlog is None:
                self.body_backlog = []
            self.body_backlog.append(data)
            self.backlog_size += PyBytes_GET_SIZE(data)
            if self.backlog_size > CLIENT_BUFFER_HIGH:
                self.client.reading_paused_backlog = True
                self.client.update_reading()

    # -- response side --

    cdef void on_upgraded(self, UpstreamConnection u, bytes buf, int32_t n):
        """101 Switching Protocols: relay the head, then both connections become a tunnel."""
        cdef gw_response_head *r = &u.head
        cdef const char *d = PyBytes_AS_STRING(buf)
        cdef size_t dlen = <size_t>n
        cdef HeadBuffer hb = self.client.server.scratch
        cdef uint32_t i
        cdef gw_header *e
        self.response_started = True
        self.status = 101
        self.keep_alive = False
        hb.length = 0
        hb.add_status_line(r.status, d, dlen, r.reason)
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & GW_HF_UPGRADE:
                hb.add_header_span("Upgrade", 7, d, dlen, e.value)
            elif not e.flags & GW_HF_HOP_BY_HOP:
                hb.add_parsed_header(d, dlen, e)
        hb.add("Connection: upgrade\r\n\r\n", 23)
        self.client.state = C_TUNNEL
        self.client.deadline = 0
        self.client.write_body(hb.take())
        if n < PyBytes_GET_SIZE(buf):
            self.client.write_body(buf[n:])
        if self.client.pending:
            # bytes the client sent after its upgrade request belong to the new protocol
            u.write(bytes(self.client.pending))
            self.client.pending.clear()

    cdef void end_tunnel(self):
        self.response_done = True
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self.client.close()
        self.finish()

    cdef void relay_informational(self, bytes buf, int32_t n):
        if self.version_minor == 1 and not self.client.transport.is_closing():
            self.client.transport.write(buf[:n])

    cdef void on_response_head(self, UpstreamConnection u, bytes buf, int32_t n,
                               size_t inline_body):
        cdef gw_response_head *r = &u.head
        cdef HeadBuffer hb
        cdef const char *d = PyBytes_AS_STRING(buf)
        cdef size_t dlen = <size_t>n
        cdef uint32_t i
        cdef gw_header *e
        cdef bint close
        cdef uint32_t drop = GW_HF_HOP_BY_HOP
        self.response_started = True
        self.status = r.status
        if self.timed:
            self.upstream_latency = now_monotonic() - self.upstream_start
        # The client keeps its connection only if both sides allow it and the body is delimited.
        close = (not self.keep_alive) or self.client.server.draining or \
            (r.body_kind == GW_BODY_UNTIL_CLOSE) or (not self.body_done)
        # body_filter hooks may change the length: the gateway frames the body itself then
        # (chunked to HTTP/1.1 clients, close-delimited to HTTP/1.0 ones).
        self.filtering = bool(self.route.body_filter) and r.body_kind != GW_BODY_NONE
        self.chunked_to_client = r.body_kind == GW_BODY_CHUNKED and (
            self.version_minor == 0 or self.filtering)
        if self.version_minor == 0 and (r.body_kind == GW_BODY_CHUNKED or self.filtering):
            # An HTTP/1.0 client cannot read chunked framing: the body ends with the connection.
            close = True
        if close:
            self.keep_alive = False
        if self.filtering:
            drop |= GW_HF_CONTENT_LENGTH
        if r.status == 204 or r.status == 304:
            # RFC 9110 8.6 / 15.4.5: no body, so no framing fields (a 304's Content-Length would
            # only describe a body that is not there; clients that trust it wait forever).
            drop |= GW_HF_CONTENT_LENGTH | GW_HF_TRANSFER_ENCODING
        self.bytes_sent += inline_body
        if self.route.header_filter or self.consumer_header_filter is not None:
            self.run_header_filter(u, buf, n, close, inline_body, drop)
            return
        hb = self.client.server.scratch
        hb.length = 0
        hb.add_status_line(r.status, d, dlen, r.reason)
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & drop:
                continue
            hb.add_parsed_header(d, dlen, e)
        if self.extra_response_headers is not None:
            for name, value in self.extra_response_headers:
                hb.add_header(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                              PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        if self.version_minor == 1 and (r.body_kind == GW_BODY_CHUNKED or self.filtering):
            hb.add("Transfer-Encoding: chunked\r\n", 28)
        if close:
            hb.add("Connection: close\r\n", 19)
        elif self.version_minor == 0:
            hb.add("Connection: keep-alive\r\n", 24)
        hb.add("\r\n", 2)
        if inline_body:
            hb.add_span(d, <size_t>PyBytes_GET_SIZE(buf), span_of(n, inline_body))
        self.client.held_head = hb.take()

    cdef void run_header_filter(self, UpstreamConnection u, bytes buf, int32_t n, bint close,
                                size_t inline_body, uint32_t drop):
        cdef gw_response_head *r = &u.head
        cdef uint32_t i
        cdef gw_header *e
        cdef list headers = []
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & drop:
                continue
            headers.append([buf[e.name.off:e.name.off + e.name.len].decode("latin-1"),
                            buf[e.value.off:e.value.off + e.value.len].decode("latin-1")])
        if self.extra_response_headers is not None:
            for name, value in self.extra_response_headers:
                headers.append([name.decode("latin-1"), value.decode("latin-1")])
        self.response_headers = headers
        self.run_header_filter_hooks()
        if self.status == r.status:
            reason = buf[r.reason.off:r.reason.off + r.reason.len]
        else:
            reason = reason_phrase(self.status).encode()
        parts = [b"HTTP/1.1 %d %s\r\n" % (self.status, reason)]
        for name, value in self.response_headers:
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        if self.version_minor == 1 and (r.body_kind == GW_BODY_CHUNKED or self.filtering):
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if close:
            parts.append(b"Connection: close\r\n")
        elif self.version_minor == 0:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        if inline_body:
            parts.append(buf[n:n + inline_body])
        self.client.held_head = b"".join(parts)

    cdef void send_response_body(self, bytes data):
        if self.filtering:
            data = self.filter_body(data, False)
            if not data:
                return
            if self.version_minor == 1:
                data = b"%x\r\n%b\r\n" % (PyBytes_GET_SIZE(data), data)
        self.bytes_sent += PyBytes_GET_SIZE(data)
        self.client.write_body(data)

    cdef bytes filter_body(self, bytes chunk, bint last):
        """Runs the body_filter hooks in order; a hook returns the new chunk (None keeps it)."""
        try:
            for hook in self.route.body_filter:
                result = hook(self, chunk, last)
                if result is not None:
                    chunk = result.encode() if isinstance(result, str) else bytes(result)
        except Exception:
            log.exception("body_filter plugin failed on route %s", self.route.id)
            self.abort_client()
            return None
        return chunk

    cdef void end_filtered_body(self):
        cdef bytes tail = self.filter_body(b"", True)
        if self.client.state == C_CLOSED:
            return
        if self.version_minor == 1:
            if tail:
                self.client.write_body(b"%x\r\n%b\r\n0\r\n\r\n" % (PyBytes_GET_SIZE(tail), tail))
            else:
                self.client.write_body(b"0\r\n\r\n")
        elif tail:
            self.client.write_body(tail)

    cdef void on_response_complete(self, UpstreamConnection u, bint upstream_keep_alive):
        cdef bint reusable = upstream_keep_alive and self.body_done and u.state != U_CLOSED
        if self.filtering:
            self.filtering = False
            self.end_filtered_body()
        self.response_done = True
        if u is self.upstream:
            self.upstream = None
        if reusable:
            self.client.server.pool_put(u, self.group)
        else:
            u.close()
        self.finish()

    cdef void on_upstream_lost(self, UpstreamConnection u, bint got_bytes, object exc):
        if u is self.upstream:
            self.upstream = None
        if self.response_done:
            return
        if self.response_started:
            # Mid-body: the client cannot be told; cut its connection so it sees a truncation.
            log.warning("upstream prematurely closed connection while reading response body "
                        "from upstream %s:%d (client %s, %s bytes relayed)", self.node.host,
                        self.node.port, self.client.client_ip.decode(), self.bytes_sent)
            self.abort_client()
            return
        if (not got_bytes and u.reused and not self.retried_stale and idempotent(self.method_id)
                and self.upstream_method is None
                and self.body_kind == GW_BODY_NONE):
            # A pooled connection the upstream had already closed: retry once on a fresh one.
            self.retried_stale = True
            self.task = asyncio.ensure_future(self.open_connection(self.node))
            return
        log.warning("upstream %s:%d closed the connection before responding", self.node.host,
                    self.node.port)
        self.respond_error(502, "upstream closed the connection")

    cdef void on_upstream_failed(self, int status, str message):
        self.upstream = None
        if self.response_done:
            return
        if self.response_started:
            self.abort_client()
            return
        self.respond_error(status, message)

    cdef void abort_client(self):
        self.response_done = True
        self.keep_alive = False
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self.client.abort()
        self.finish()

    cdef void respond_error(self, int status, str message):
        self.respond_local(status, error_body(message), JSON_HEADERS, KEEP)

    cdef void respond_local(self, int status, bytes body, object headers, int mode):
        cdef bint close
        if self.response_started or self.client.state == C_CLOSED:
            return
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self.status = status
        self.response_started = True
        self.response_done = True
        close = mode == CLOSE or not self.keep_alive or not self.body_done or \
            self.client.server.draining
        self.keep_alive = not close
        if self.extra_response_headers is not None or (self.route is not None and (
                self.route.header_filter or self.consumer_header_filter is not None)):
            headers = self.filter_local_headers(headers)
            status = self.status
        out = encode_local_response(status, body or b"", headers, close, self.is_head)
        self.bytes_sent = len(body or b"")
        self.client.write_head(out)
        self.finish()

    cdef list filter_local_headers(self, object headers):
        """A response the gateway generates gets the headers plugins added, and passes the
        header_filter hooks like a proxied one (CORS headers on a 401, say)."""
        cdef list out = []
        if headers:
            for name, value in (headers.items() if hasattr(headers, "items") else headers):
                out.append([name.decode("latin-1") if isinstance(name, bytes) else str(name),
                            value.decode("latin-1") if isinstance(value, bytes) else str(value)])
        if self.extra_response_headers is not None:
            for name, value in self.extra_response_headers:
                out.append([name.decode("latin-1"), value.decode("latin-1")])
        if self.route is None or self.response_headers is not None:
            return out  # no hooks, or already inside them (a hook answering from header_filter)
        if self.route.header_filter or self.consumer_header_filter is not None:
            self.response_headers = out
            self.run_header_filter_hooks()
            out = self.response_headers
        return out

    cdef void log_abandoned(self):
        """The client went away before its response was complete: the log phase still runs
        (metrics, limit-conn's release), with 499 when no response had started (nginx's code)."""
        self.response_done = True
        if not self.response_started:
            self.status = 499
        self.run_log_phase()

    cdef void run_header_filter_hooks(self):
        """The route's header_filter hooks, then the consumer's; a failing hook is logged and
        the response goes out as the hooks before it left it."""
        try:
            for hook in self.route.header_filter:
                hook(self)
            if self.consumer_header_filter is not None:
                for hook in self.consumer_header_filter:
                    hook(self)
        except Exception:
            log.exception("header_filter plugin failed on route %s", self.route.id)

    cdef void run_log_phase(self):
        cdef RouteEntry route = self.route
        if route is not None and route.log:
            self.run_log_hooks(route.log)
        if self.consumer_log is not None:
            self.run_log_hooks(self.consumer_log)
        if self.client.server.on_log is not None:
            try:
                self.client.server.on_log(self)
            except Exception:
                log.exception("access log failed")

    cdef void run_log_hooks(self, tuple hooks):
        for hook in hooks:
            try:
                result = hook(self)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("log plugin failed on route %s", self.route.id)

    cdef void finish(self):
        cdef ClientConnection client = self.client
        client.flush_head()
        self.run_log_phase()
        client.on_exchange_done(self)


# ----------------------------------------------------------------------------------------------
# Client side
# ----------------------------------------------------------------------------------------------

cdef class ClientConnection:
    cdef Server server
    cdef object transport
    cdef public bytes client_ip
    cdef public int client_port
    cdef gw_request_head head
    cdef bytearray pending
    cdef public int state
    cdef Exchange ex
    cdef double deadline
    cdef gw_chunked *chunked
    cdef bint reading_paused
    cdef bint reading_paused_upstream      # the upstream cannot take more request body
    cdef bint reading_paused_backlog       # body waiting for an upstream connection
    cdef bint reading_paused_pipeline      # pipelined bytes waiting for the current response
    cdef bint writing_paused               # the client's write buffer is above its high water
    cdef double send_deadline              # writing paused and no progress by then: cut it
    cdef size_t send_buffered              # write buffer size when the deadline was set
    cdef bint processing
    cdef public int requests
    cdef bytes held_head                   # response head waiting for its first body bytes
    cdef object write                      # transport.write, bound once per connection

    def __cinit__(self):
        self.chunked = gw_chunked_new()

    def __dealloc__(self):
        if self.chunked != NULL:
            gw_chunked_free(self.chunked)
            self.chunked = NULL

    def __init__(self, Server server):
        self.server = server
        self.pending = bytearray()
        self.state = C_IDLE
        self.client_ip = b"unknown"
        self.client_port = 0

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.server.clients.add(self)
        self.server.connections_total += 1
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
            self.client_port = peer[1] if len(peer) > 1 else 0
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        # Until the first byte the idle timer applies; the header timer starts with the head.
        self.deadline = now_monotonic() + self.server.runtime.header_timeout
        if self.server.draining:
            self.close()

    def connection_lost(self, exc):
        cdef Exchange ex = self.ex
        if self.state == C_TUNNEL and ex is not None:
            self.state = C_CLOSED
            self.server.clients.discard(self)
            self.ex = None
            ex.end_tunnel()
            return
        self.state = C_CLOSED
        self.server.clients.discard(self)
        self.deadline = 0
        if ex is not None:
            self.ex = None
            if ex.task is not None and not ex.task.done():
                ex.task.cancel()
            if ex.upstream is not None:
                ex.upstream.close()
                ex.upstream = None
            if not ex.response_done:
                ex.log_abandoned()

    def eof_received(self):
        # A half-closed client still gets its in-flight response; then the connection closes.
        if self.state == C_ACTIVE and self.ex is not None:
            self.ex.keep_alive = False
            return True
        return False

    def pause_writing(self):
        # The client reads slower than we answer: stop reading its requests (no new responses
        # pile up behind the unread ones) and start its send_timeout.
        self.writing_paused = True
        self.send_buffered = self.transport.get_write_buffer_size()
        self.send_deadline = now_monotonic() + self.server.runtime.send_timeout
        self.update_reading()
        if self.ex is not None and self.ex.upstream is not None:
            self.ex.upstream.pause_reading_for_client()

    def resume_writing(self):
        self.writing_paused = False
        self.send_deadline = 0
        if self.ex is not None and self.ex.upstream is not None:
            self.ex.upstream.resume_reading_for_client()
        self.update_reading()
        if self.state == C_IDLE and self.pending and not self.processing:
            data = bytes(self.pending)
            self.pending.clear()
            self.process(data)

    cdef void on_send_timeout(self, double now):
        """No byte of the buffered response left for send_timeout: nginx's send_timeout."""
        cdef size_t buffered = self.transport.get_write_buffer_size() \
            if self.transport is not None else 0
        if buffered < self.send_buffered:
            self.send_buffered = buffered  # the client read something: it is slow, not gone
            self.send_deadline = now + self.server.runtime.send_timeout
            return
        log.warning("client timed out while sending response to client %s:%d (%d bytes unsent)",
                    self.client_ip.decode(), self.client_port, buffered)
        self.send_deadline = 0
        if self.ex is not None:
            self.ex.abort_client()
        else:
            self.abort()

    cdef void pause_reading_for_upstream(self):
        self.reading_paused_upstream = True
        if self.state == C_ACTIVE:
            self.deadline = 0  # the upstream is the slow side: its send timeout runs, not ours
        self.update_reading()

    cdef void resume_reading_for_upstream(self):
        self.reading_paused_upstream = False
        if self.state == C_ACTIVE and self.ex is not None and not self.ex.body_done:
            self.deadline = now_monotonic() + self.ex.runtime.body_timeout
        self.update_reading()

    cdef void update_reading(self):
        cdef bint want_pause = (self.reading_paused_upstream or self.reading_paused_backlog or
                                self.reading_paused_pipeline or self.writing_paused)
        if self.state == C_CLOSED or self.transport is None:
            return
        if want_pause and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        elif not want_pause and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def data_received(self, bytes data):
        cdef Exchange ex
        if self.state == C_TUNNEL:
            ex = self.ex
            if ex is not None and ex.upstream is not None:
                ex.upstream.write(data)
                ex.upstream.deadline = now_monotonic() + ex.read_timeout
            return
        if self.state == C_ACTIVE:
            ex = self.ex
            if ex is not None and not ex.body_done:
                data = self.feed_body(data)
                if not data:
                    return
            # pipelined: held until the current response is complete
            self.pending += data
            if len(self.pending) > CLIENT_BUFFER_HIGH:
                self.reading_paused_pipeline = True
                self.update_reading()
            return
        if self.state == C_CLOSED or self.state == C_LINGER:
            return
        if self.writing_paused:
            self.pending += data  # answered once the client reads what it was sent
            return
        if self.pending:
            self.pending += data
            data = bytes(self.pending)
            self.pending.clear()
        self.process(data)

    cdef void process(self, bytes data):
        """Parses and starts requests from ``data`` until one is in flight or bytes run out."""
        cdef const char *reason = NULL
        cdef int32_t n
        cdef Exchange ex
        cdef Runtime runtime
        cdef bytes rest
        self.processing = True
        try:
            while data is not None and (self.state == C_IDLE or self.state == C_HEAD):
                runtime = self.server.runtime
                n = gw_parse_request(<const uint8_t *>PyBytes_AS_STRING(data),
                                     PyBytes_GET_SIZE(data), &runtime.limits, &self.head, &reason)
                if n == 0:
                    if self.state == C_IDLE:
                        self.state = C_HEAD
                        self.deadline = now_monotonic() + runtime.header_timeout
                    self.pending += data
                    return
                if n < 0:
                    self.reject(-n, (<bytes>reason).decode(errors="replace")
                                if reason != NULL else "bad request")
                    return
                rest = data[n:] if n < PyBytes_GET_SIZE(data) else None
                ex = self.begin(data, runtime)
                if self.ex is ex:
                    if rest is not None and not ex.body_done:
                        rest = self.feed_body(rest)
                    if self.ex is ex and not ex.response_started:
                        ex.start()
                if self.state == C_ACTIVE:
                    if rest:
                        self.pending += rest
                        if len(self.pending) > CLIENT_BUFFER_HIGH:
                            self.reading_paused_pipeline = True
                            self.update_reading()
                    return
                data = rest
                if data is not None and self.writing_paused:
                    self.pending += data  # answered once the client reads what it was sent
                    return
        finally:
            self.processing = False

    cdef Exchange begin(self, bytes data, Runtime runtime):
        cdef Exchange ex = Exchange.__new__(Exchange)
        cdef gw_request_head *h = &self.head
        cdef const char *d = PyBytes_AS_STRING(data)
        cdef gw_params *params = self.server.match_params
        cdef int64_t code
        cdef const uint8_t *norm
        cdef size_t norm_len = 0
        cdef uint8_t changed = 0
        ex.client = self
        ex.runtime = runtime
        ex.data = data
        ex.head = h
        ex.method_id = h.method_id
        ex.is_head = h.method_id == GW_METHOD_HEAD
        ex.keep_alive = h.keep_alive
        ex.version_minor = h.version_minor
        ex.body_kind = h.body_kind
        ex.body_remaining = h.content_length
        ex.body_done = h.body_kind == GW_BODY_NONE or (
            h.body_kind == GW_BODY_LENGTH and h.content_length == 0)
        # Precise clock reads only when something will report latencies (log hooks, access log).
        ex.timed = runtime.timed or self.server.on_log is not None
        ex.start_time = now_monotonic() if ex.timed else self.server.clock
        self.ex = ex
        self.state = C_ACTIVE
        self.requests += 1
        self.server.requests_total += 1
        self.deadline = 0 if ex.body_done else now_monotonic() + runtime.body_timeout
        if h.body_kind == GW_BODY_CHUNKED:
            gw_chunked_reset(self.chunked)
        if runtime.max_body and h.body_kind == GW_BODY_LENGTH and h.content_length > runtime.max_body:
            ex.respond_error(413, "request body too large")
            return ex
        ex.expect_continue = h.expect_continue and h.version_minor == 1 and not ex.body_done
        if h.path.len:
            code = gw_router_find(runtime.router_handle, <const uint8_t *>d + h.method.off,
                                  h.method.len, <const uint8_t *>d + h.host.off,
                                  h.host.len if h.has_host else 0,
                                  <const uint8_t *>d + h.path.off, h.path.len, params)
        else:
            code = gw_router_find(runtime.router_handle, <const uint8_t *>d + h.method.off,
                                  h.method.len, <const uint8_t *>d + h.host.off,
                                  h.host.len if h.has_host else 0, <const uint8_t *>"/", 1, params)
        if code < 0:
            ex.expect_continue = False
            if code == ROUTE_BAD_PATH:
                ex.respond_error(400, "bad request path")
            else:
                ex.respond_error(404, "404 Route Not Found")
            return ex
        ex.route = <RouteEntry>runtime.routes[code]
        ex.upgrading = h.upgrade and ex.route.websocket
        if gw_params_count(params):
            ex.raw_params = match_params(params)
        norm = gw_params_path(params, &norm_len, &changed)
        if changed:
            ex.normalized_path = PyBytes_FromStringAndSize(<const char *>norm, norm_len)
        return ex

    cdef bytes feed_body(self, bytes data):
        """Hands request body bytes to the exchange; returns the bytes past the body's end."""
        cdef Exchange ex = self.ex
        cdef size_t size = PyBytes_GET_SIZE(data)
        cdef size_t consumed = 0
        cdef uint8_t done = 0
        cdef int32_t rc
        cdef bytes rest = None
        cdef Runtime runtime = ex.runtime
        if ex.body_kind == GW_BODY_LENGTH:
            if size <= ex.body_remaining:
                ex.body_remaining -= size
            else:
                rest = data[ex.body_remaining:]
                data = data[:ex.body_remaining]
                ex.body_remaining = 0
            if ex.body_remaining == 0:
                ex.body_done = True
        else:
            rc = gw_chunked_feed(self.chunked, <const uint8_t *>PyBytes_AS_STRING(data), size,
                                 &consumed, &done)
            if rc != 0:
                self.fail_request_body(-rc, "invalid chunked body")
                return None
            if consumed < size:
                rest = data[consumed:]
                data = data[:consumed]
            if (runtime.max_body and gw_chunked_body_bytes(self.chunked) > runtime.max_body) or (
                    ex.body_limit and gw_chunked_body_bytes(self.chunked) > ex.body_limit):
                self.fail_request_body(413, "request body too large")
                return None
            if done:
                ex.body_done = True
        self.deadline = 0 if ex.body_done else now_monotonic() + runtime.body_timeout
        if not ex.response_done:
            ex.on_request_body(data)
        return rest

    cdef void fail_request_body(self, int status, str message):
        cdef Exchange ex = self.ex
        ex.keep_alive = False
        if not ex.response_started:
            ex.respond_error(status, message)
        if self.state != C_LINGER:
            self.abort()

    cdef void write_head(self, bytes head):
        if self.state != C_CLOSED:
            self.transport.write(head)

    cdef void write_body(self, bytes data):
        cdef bytes head = self.held_head
        if self.state == C_CLOSED:
            return
        if head is None:
            self.write(data)
            return
        # A response head is held back so it leaves with the first body bytes in one syscall.
        self.held_head = None
        if PyBytes_GET_SIZE(data) <= 16384:
            self.write(head + data)
        else:
            self.transport.writelines((head, data))

    cdef void flush_head(self):
        cdef bytes head = self.held_head
        if head is not None:
            self.held_head = None
            if self.state != C_CLOSED:
                self.write(head)

    cdef void on_exchange_done(self, Exchange ex):
        if self.ex is not ex:
            return
        self.ex = None
        if self.state == C_CLOSED or self.state == C_LINGER:
            return
        if not ex.body_done:
            # Answered before the request body ended: the rest is never read, so close gently.
            self.linger()
            return
        if not ex.keep_alive:
            self.close()
            return
        self.state = C_IDLE
        self.deadline = now_monotonic() + ex.runtime.keepalive_timeout
        if self.reading_paused:
            self.reading_paused_pipeline = False
            self.reading_paused_backlog = False
            self.reading_paused_upstream = False
            self.update_reading()
        if self.pending and not self.processing and not self.writing_paused:
            data = bytes(self.pending)
            self.pending.clear()
            self.process(data)

    cdef void reject(self, int status, str reason):
        """Malformed request: answer and close (RFC 9112: the framing can no longer be trusted)."""
        cdef bytes out = encode_local_response(
            status, error_body(reason), (("Content-Type", "application/json"),), True, False)
        self.pending.clear()
        if self.state != C_CLOSED:
            self.transport.write(out)
            self.linger()

    cdef void linger(self):
        """Half-closes after the response and drops further input for a moment, so the client
        reads the response instead of a reset caused by unread request bytes."""
        if self.state == C_CLOSED:
            return
        self.state = C_LINGER
        self.pending.clear()
        self.deadline = now_monotonic() + LINGER_SECONDS
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except (OSError, RuntimeError):
            self.close()
            return
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    cdef void on_timeout(self, double now):
        if self.state == C_IDLE or self.state == C_LINGER:
            self.close()  # keep-alive idle timeout: close quietly
        elif self.state == C_HEAD:
            self.reject(408, "request header timeout")
        elif self.state == C_ACTIVE:
            self.deadline = 0
            if self.ex is not None and not self.ex.body_done and not self.ex.response_started:
                self.ex.respond_error(408, "request body timeout")

    cdef void abort(self):
        if self.state != C_CLOSED:
            self.state = C_CLOSED
            self.server.clients.discard(self)
            if self.transport is not None:
                self.transport.abort()

    cdef void close(self):
        if self.state != C_CLOSED:
            self.state = C_CLOSED
            self.server.clients.discard(self)
            if self.transport is not None:
                self.transport.close()
