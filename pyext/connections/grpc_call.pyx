# gRPC proxying (README "gRPC"): a call is an HTTP/2 stream end to end. The gateway passes the
# response head, the messages and the trailers through unchanged and speaks gRPC itself only
# when it must end a call: then it answers a grpc-status (a trailers-only response when nothing
# was answered yet, else trailers after what was relayed), never an HTTP error page.

GRPC_OK = 0
GRPC_CANCELLED = 1
GRPC_UNKNOWN = 2
GRPC_DEADLINE_EXCEEDED = 4
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16

# Request fields that describe the client's connection, not the call: never forwarded (the
# pseudo-headers are rebuilt for the upstream).
cdef frozenset _CONNECTION_FIELDS = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host",
    b"http2-settings", b"x-forwarded-for", b"x-forwarded-proto"})

# grpc-timeout's units (the gRPC over HTTP/2 spec), in seconds
cdef dict _TIMEOUT_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3,
                            ord("u"): 1e-6, ord("n"): 1e-9}


cpdef double grpc_timeout_seconds(bytes value):
    """A grpc-timeout value ("100m": 1 to 8 digits and a unit) in seconds; -1 when invalid."""
    cdef Py_ssize_t n = len(value)
    if n < 2 or n > 9 or not value[:n - 1].isdigit():
        return -1.0
    unit = _TIMEOUT_UNITS.get(value[n - 1])
    if unit is None:
        return -1.0
    return int(value[:n - 1]) * <double>unit


cpdef bytes grpc_timeout_value(double seconds):
    """``seconds`` as a grpc-timeout value (at most 8 digits; rounded up, at least 1m)."""
    cdef double ms = math.ceil(seconds * 1000.0)
    if ms < 1:
        return b"1m"
    if ms < 1e8:
        return b"%dm" % <long long>ms
    return b"%dS" % <long long>min(math.ceil(seconds), 99999999)


cpdef int grpc_status_for_http(int status):
    """The gRPC status a client reads from an HTTP status without one (the gRPC spec's table:
    "HTTP to gRPC Status Code Mapping"), except 429, which is a quota here (RESOURCE_EXHAUSTED)
    rather than the table's UNAVAILABLE."""
    if status == 200:
        return GRPC_OK
    if status == 400:
        return GRPC_INTERNAL
    if status == 401:
        return GRPC_UNAUTHENTICATED
    if status == 403:
        return GRPC_PERMISSION_DENIED
    if status == 404:
        return GRPC_UNIMPLEMENTED
    if status == 429:
        return GRPC_RESOURCE_EXHAUSTED
    if status == 502 or status == 503 or status == 504:
        return GRPC_UNAVAILABLE
    return GRPC_UNKNOWN


cdef int _status_for_reset(uint32_t code):
    """What an ended upstream stream means to the client (the spec's RST_STREAM table); a lost
    connection is UNAVAILABLE, as gRPC clients report it."""
    if code == NGHTTP2_REFUSED_STREAM or code == H2_CONNECTION_LOST:
        return GRPC_UNAVAILABLE
    if code == NGHTTP2_CANCEL:
        return GRPC_CANCELLED
    if code == NGHTTP2_ENHANCE_YOUR_CALM:
        return GRPC_RESOURCE_EXHAUSTED
    if code == NGHTTP2_INADEQUATE_SECURITY:
        return GRPC_PERMISSION_DENIED
    return GRPC_INTERNAL


cpdef bytes grpc_message_encode(str message):
    """grpc-message's percent-encoding: UTF-8, bytes outside printable ASCII and '%' escaped."""
    cdef bytes raw = message.encode("utf-8")
    cdef bytearray out = bytearray()
    cdef unsigned char c
    for c in raw:
        if 0x20 <= c <= 0x7e and c != 0x25:
            out.append(c)
        else:
            out += b"%%%02X" % c
    return bytes(out)


cpdef list grpc_status_fields(int code, str message):
    """grpc-status and grpc-message, as trailers."""
    fields = [(b"grpc-status", str(code).encode())]
    if message:
        fields.append((b"grpc-message", grpc_message_encode(message)))
    return fields


cpdef list grpc_trailers_only(int code, str message, list extra=None):
    """A whole gRPC answer in one HEADERS frame (the spec's Trailers-Only response): HTTP 200,
    application/grpc, the status. ``extra``: more fields (plugins' response headers)."""
    fields = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    if extra:
        fields.extend(extra)
    fields.extend(grpc_status_fields(code, message))
    return fields


cdef void add_plugin_fields(Exchange ex, list fields):
    """The response headers plugins added (limit-count's quota, request-id): as on any
    response, the defaults only where the upstream's head has none of that name."""
    cdef bytes name, lower, value
    if ex.extra_response_headers is not None:
        for name, value in ex.extra_response_headers:
            fields.append((name.lower(), value))
    if ex.default_response_headers is not None:
        present = {f[0] for f in fields}
        for name, lower, value in ex.default_response_headers:
            if lower not in present:
                fields.append((lower, value))


cdef int _grpc_status_in(list fields):
    cdef bytes name, value
    for name, value in fields:
        if name == b"grpc-status":
            return int(value) if value.isdigit() else GRPC_UNKNOWN
    return -1


cdef class GrpcDownstream:
    cdef void send_response(self, list headers, bint end_stream):
        pass

    cdef void send_data(self, bytes data):
        pass

    cdef void send_trailers(self, list trailers):
        pass

    cdef void consume_request(self, size_t n):
        pass

    cdef void reset(self, uint32_t error_code):
        pass

    cdef void call_done(self, GrpcCall call):
        pass

    cdef void flush_out(self):
        """Sends what the calls queued (batched while an upstream's frames are read)."""
        pass


cdef class GrpcCall(H2StreamOwner):
    """Proxies one call: started once the request head passed routing and plugins; the
    downstream then feeds it the request DATA (on_request_data), the bytes its client took
    (on_response_sent) and a client's reset (on_client_reset)."""

    def __init__(self, GrpcDownstream down, H2UpstreamPool pool, object loop, UpstreamGroup group,
                 list client_fields, bytes client_ip=None, bytes scheme=b"http",
                 Exchange ex=None):
        """``client_fields``: the request's fields as received, pseudo-headers included. The
        deadline (grpc-timeout) runs from now; request DATA is kept until start()."""
        cdef double timeout
        self.down = down
        self.ex = ex
        self.pool = pool
        self.loop = loop
        self.group = group
        self.grpc_status = -1
        self.client_ip = client_ip
        self.scheme = scheme
        timeout = self.take_fields(client_fields)
        self.started_at = now_monotonic()
        if timeout >= 0:
            self.deadline = self.started_at + timeout
            self.timer = loop.call_later(timeout, self.on_deadline)

    cdef double take_fields(self, list client_fields):
        """The request's fields as the upstream gets them (called again once plugins have
        changed them); returns the grpc-timeout in seconds, -1 without one."""
        cdef bytes name, value
        cdef double timeout = -1.0
        self.path = b"/"
        self.authority = b""
        fields = []
        for name, value in client_fields:
            if name[:1] == b":":
                if name == b":path":
                    self.path = value
                elif name == b":authority":
                    self.authority = value
            elif name == b"grpc-timeout":
                timeout = grpc_timeout_seconds(value)  # sent as what is left of it (try_node)
            elif name not in _CONNECTION_FIELDS:
                fields.append((name, value))
        if self.client_ip is not None:
            fields.append((b"x-forwarded-for", self.client_ip))
            fields.append((b"x-forwarded-proto", self.scheme))
        self.fields = fields
        return timeout

    cdef void start(self, UpstreamGroup group):
        """Routing and plugins let the call through to ``group`` (None: the one given)."""
        cdef bytearray body = self.early
        cdef size_t n = len(body) if body is not None else 0
        if group is not None:
            self.group = group
        self.started = True
        self.early = None
        if self.finished:
            return
        self.unacked += n  # acknowledged to the client once the upstream stream takes them
        self.try_node(body, self.early_end)
        if self.up is not None and not self.up.over_high_water:
            self.on_h2_request_drained(self.up)

    cdef void try_node(self, bytearray body, bint body_ended):
        cdef UpstreamGroup group = self.group
        cdef UpstreamNode node = group.pick(self.ex, self.failed_nodes)
        cdef bytes authority
        cdef H2UpstreamStream s
        if node is None:
            self.answer_status(GRPC_UNAVAILABLE, "no upstream node available")
            return
        self.node = node
        self.held = node
        node.acquire()
        self.attempts += 1
        if group.pass_host == 1:
            authority = node.host_header
        elif group.pass_host == 2:
            authority = group.upstream_host
        else:
            authority = self.authority or node.host_header
        headers = [(b":method", b"POST"), (b":scheme", b"https" if node.ssl is not None else b"http"),
                   (b":path", self.path), (b":authority", authority)]
        headers.extend(self.fields)
        if self.timer is not None:
            # the node gets the time left, not the client's whole timeout: plugins, connects
            # and earlier tries took some
            headers.append((b"grpc-timeout", grpc_timeout_value(self.deadline - now_monotonic())))
        s = self.pool.open_stream(self.loop, node, group, self, headers)
        if s.owner is not self:
            return  # refused at once (on_h2_unsent ran and decided what comes next)
        self.up = s
        if body or body_ended:
            s.send_data(bytes(body) if body else b"", body_ended)

    # -- from the downstream --

    cdef void on_request_data(self, bytes data, bint end):
        cdef size_t n = len(data)
        if not self.started and not self.finished:
            if self.early is None:
                self.early = bytearray()
            self.early += data
            self.early_end = end
            return
        if self.up is None:
            if n:
                self.down.consume_request(n)  # the call is over: nothing to hold the client for
            return
        if self.up.send_data(data, end) and self.unacked == 0:
            if n:
                self.down.consume_request(n)
        else:
            self.unacked += n  # acknowledged once the upstream has taken the backlog

    cdef void on_response_sent(self, size_t n):
        if self.up is not None:
            self.up.consumed(n)

    cdef void on_client_reset(self):
        """The client cancelled (RST_STREAM) or went away: so does the upstream stream."""
        if self.finished:
            return
        self.finished = True
        self.grpc_status = GRPC_CANCELLED
        if self.up is not None:
            self.up.cancel(NGHTTP2_CANCEL)
            self.up = None
        self.end()

    def on_deadline(self):
        """grpc-timeout passed before the call ended: the upstream stream is cancelled and the
        client told DEADLINE_EXCEEDED (it may have given up by itself at the same moment)."""
        self.timer = None
        if not self.finished:
            log.info("gRPC call %s: deadline exceeded after %.3f s", self.path.decode("latin-1"),
                     now_monotonic() - self.started_at)
            self.answer_status(GRPC_DEADLINE_EXCEEDED, "deadline exceeded")

    # -- from the upstream stream --

    cdef void on_h2_response(self, H2UpstreamStream s, int status, list headers, bint end_stream):
        cdef int code = _grpc_status_in(headers)
        self.http_status = status
        if self.group.passive is not None:
            self.group.passive.on_status(self.node, status)
        if status != 200 and code < 0:
            # not a gRPC answer (a proxy or web server in front of the service)
            self.answer_status(grpc_status_for_http(status), f"upstream answered HTTP {status}")
            return
        self.responded = True
        fields = [(b":status", str(status).encode())]
        fields.extend(headers)
        if self.ex is not None and (self.ex.extra_response_headers is not None
                                    or self.ex.default_response_headers is not None):
            add_plugin_fields(self.ex, fields)
        if end_stream:
            self.finished = True
            self.grpc_status = code if code >= 0 else GRPC_UNKNOWN
            self.up = None
            self.down.send_response(fields, True)
            self.end()
        else:
            self.down.send_response(fields, False)

    cdef void on_h2_data(self, H2UpstreamStream s, bytes data):
        self.down.send_data(data)

    cdef void on_h2_trailers(self, H2UpstreamStream s, list trailers):
        if self.finished:
            return
        self.finished = True
        self.grpc_status = _grpc_status_in(trailers)
        self.up = None
        self.down.send_trailers(trailers)
        self.end()

    cdef void on_h2_closed(self, H2UpstreamStream s, uint32_t error_code):
        self.up = None
        if self.finished:
            return
        if error_code == NGHTTP2_NO_ERROR:
            self.answer_status(GRPC_INTERNAL, "upstream ended the call without a grpc-status")
        elif error_code == H2_CONNECTION_LOST:
            if self.group.passive is not None:
                self.group.passive.on_failure(self.node, 502)
            self.answer_status(GRPC_UNAVAILABLE, "upstream connection lost")
        else:
            self.answer_status(_status_for_reset(error_code),
                               "upstream reset the stream: " +
                               (<bytes>nghttp2_http2_strerror(error_code)).decode())

    cdef void on_h2_unsent(self, H2UpstreamStream s, str reason, bint timed_out):
        """Nothing of the call reached ``self.node``: another node may take it."""
        cdef UpstreamNode node = self.node
        self.up = None
        if self.finished:
            return
        if self.group.passive is not None:
            self.group.passive.on_failure(node, 504 if timed_out else 502)
        if self.held is not None:
            self.held.release()
            self.held = None
        if self.failed_nodes is None:
            self.failed_nodes = set()
        self.failed_nodes.add(node)
        if self.attempts <= self.group.retries:
            if len(self.failed_nodes) >= len(self.group.nodes):
                self.failed_nodes = None  # tried them all: any again
            self.try_node(s.outgoing, s.out_ended)
            return
        self.answer_status(GRPC_UNAVAILABLE, reason)

    cdef void on_h2_request_drained(self, H2UpstreamStream s):
        cdef size_t n = self.unacked
        if n:
            self.unacked = 0
            self.down.consume_request(n)

    # -- endings --

    cdef void answer_status(self, int code, str message):
        """The gateway ends the call with ``code``: trailers-only when nothing was answered,
        else trailers after what was relayed; the upstream stream, if any, is cancelled."""
        if self.finished:
            return
        self.finished = True
        self.grpc_status = code
        if self.up is not None:
            self.up.cancel(NGHTTP2_CANCEL)
            self.up = None
        if self.responded:
            self.down.send_trailers(grpc_status_fields(code, message))
        else:
            self.responded = True
            self.down.send_response(grpc_trailers_only(code, message), True)
        self.end()

    cdef void end(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.held is not None:
            self.held.release()
            self.held = None
        if self.unacked:
            self.down.consume_request(self.unacked)
            self.unacked = 0
        if self.early:
            self.down.consume_request(len(self.early))
            self.early = None
        self.down.call_done(self)

    # -- the same, from Python (a downstream written in Python; the tests) --

    def begin(self):
        self.start(None)

    def request_data(self, bytes data, bint end=False):
        self.on_request_data(data, end)

    def response_sent(self, size_t n):
        self.on_response_sent(n)

    def client_reset(self):
        self.on_client_reset()


cdef class PyGrpcDownstream(GrpcDownstream):
    """A downstream whose events go to a Python object's methods: ``response(fields,
    end_stream)``, ``data(bytes)``, ``trailers(fields)``, ``consume(n)``, ``reset(code)``,
    ``done(call)``."""
    cdef object target

    def __init__(self, target):
        self.target = target

    cdef void send_response(self, list headers, bint end_stream):
        self.target.response(headers, end_stream)

    cdef void send_data(self, bytes data):
        self.target.data(data)

    cdef void send_trailers(self, list trailers):
        self.target.trailers(trailers)

    cdef void consume_request(self, size_t n):
        self.target.consume(n)

    cdef void reset(self, uint32_t error_code):
        self.target.reset(error_code)

    cdef void call_done(self, GrpcCall call):
        self.target.done(call)
