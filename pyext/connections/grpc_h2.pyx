# gRPC calls on the HTTP/2 downstream (README "gRPC"). An H2Stream whose route proxies to a
# grpc/grpcs upstream gets a GrpcCall as soon as its head is routed: its request DATA goes to
# the call raw (not through the HTTP/1.1 body framing the Exchange uses), and the call answers
# through H2GrpcDownstream, which submits HEADERS, DATA and trailers on the stream itself (an
# HTTP/1.1 head cannot carry trailers). Routing, plugins and the log phase stay the Exchange's.

cdef inline bytes _lower(const char *d, gw_span span):
    return PyBytes_FromStringAndSize(d + span.off, span.len).lower()


cdef list grpc_request_fields(Exchange ex, bytes path, bytes authority):
    """The request's fields for the upstream, pseudo-headers first: the client's, with what
    plugins removed or set (proxy-rewrite, hide_credentials) and their path rewrite."""
    cdef gw_request_head *h = ex.head
    cdef const char *d = PyBytes_AS_STRING(ex.data)
    cdef set removed = ex.upstream_header_remove
    cdef uint32_t i
    cdef bytes name
    fields = [(b":path", ex.upstream_path or path or b"/"), (b":authority", authority or b"")]
    for i in range(h.n_headers):
        name = _lower(d, h.headers[i].name)
        if removed is not None and name in removed:
            continue
        fields.append((name, PyBytes_FromStringAndSize(d + h.headers[i].value.off,
                                                       h.headers[i].value.len)))
    if ex.upstream_header_set:
        for name, value in ex.upstream_header_set:
            fields.append((name.lower(), value))
    return fields


cdef bint is_grpc_request(Exchange ex):
    """An HTTP/2 request whose content-type is application/grpc (or a +proto/+json form)."""
    cdef object ctype
    if ex.head == NULL or ex.head.version_minor != 2:
        return False
    ctype = ex.header_value(b"content-type")
    return ctype is not None and ctype.startswith("application/grpc")


cdef GrpcCall grpc_call_for(H2Stream stream, Exchange ex):
    """The call of a routed HTTP/2 request whose route proxies gRPC; None otherwise (the
    request then goes the Exchange's way)."""
    cdef RouteEntry route = ex.route
    cdef H2GrpcDownstream down
    cdef GrpcCall call
    if route is None or route.upstream is None or not route.upstream.grpc:
        return None
    down = H2GrpcDownstream(stream, ex)
    # only the deadline now (it runs from the request's arrival); the fields are taken once the
    # plugins have run (proceed_grpc)
    timeout = ex.header_value(b"grpc-timeout")
    call = GrpcCall(down, stream.server.h2_pool, stream.server.loop, route.upstream,
                    [(b"grpc-timeout", timeout.encode("latin-1"))] if timeout is not None else [],
                    stream.client_ip, b"https" if stream.tls is not None else b"http", ex)
    down.call = call
    return call


cdef bint proceed_grpc(Exchange ex, UpstreamGroup group):
    """The Exchange's request phases passed and ``group`` proxies gRPC: the call starts. False
    when the request cannot be a gRPC call (an HTTP/1.1 client: gRPC needs HTTP/2's trailers),
    which the caller answers."""
    cdef GrpcCall call
    if type(ex.client) is not H2Stream:
        return False
    call = (<H2Stream>ex.client).grpc
    if call is None:
        return False
    # the fields again: plugins may have changed them (proxy-rewrite, hide_credentials)
    call.take_fields(grpc_request_fields(ex, (<H2Stream>ex.client).path,
                                         (<H2Stream>ex.client).authority))
    call.start(group)
    return True


cdef list grpc_answer_fields(int status, bytes body, object headers, int grpc_status):
    """A gateway answer (a plugin's refusal, 404 route not found, 502 ...) for a gRPC client:
    the fields of a trailers-only response with the status the HTTP status means to gRPC
    (or the plugin's own) and the body's message; the plugin's headers go along (rate-limit
    headers, WWW-Authenticate)."""
    cdef str message = ""
    extra = []
    if headers:
        for name, value in (headers.items() if hasattr(headers, "items") else headers):
            name = name.encode("latin-1") if isinstance(name, str) else bytes(name)
            lname = name.lower()
            if lname in (b"content-type", b"content-length"):
                continue
            extra.append((lname, value.encode("latin-1") if isinstance(value, str) else bytes(value)))
    if body:
        try:
            parsed = json.loads(body)
            message = str(parsed.get("error_msg") or parsed.get("message") or "") \
                if isinstance(parsed, dict) else ""
        except ValueError:
            message = ""
        if not message:
            message = body.decode("utf-8", "replace").strip()
    if not message:
        message = f"HTTP {status}"
    return grpc_trailers_only(grpc_status if grpc_status >= 0 else grpc_status_for_http(status),
                              message[:512], extra)


cdef class H2GrpcDownstream(GrpcDownstream):
    """The call's side of one HTTP/2 stream: its own DATA source, so the response's bytes are
    acknowledged to the upstream only as the client's window takes them, and the trailers
    follow the last DATA frame."""
    cdef H2Stream stream
    cdef Exchange ex
    cdef GrpcCall call
    cdef list out                         # response bytes not yet framed
    cdef size_t out_first                 # bytes of out[0] already framed
    cdef size_t out_size
    cdef list trailers                    # sent after the last DATA
    cdef bint deferred
    cdef bint ended

    def __init__(self, H2Stream stream, Exchange ex):
        self.stream = stream
        self.ex = ex
        self.out = []

    cdef void send_response(self, list headers, bint end_stream):
        cdef H2Stream s = self.stream
        cdef nghttp2_data_provider2 provider
        cdef nghttp2_nv *nva
        cdef int rc
        if s.state == C_CLOSED:
            return
        nva = h2_nv_array(headers)
        self.ended = end_stream
        if end_stream:
            rc = nghttp2_submit_response2(s.conn.session, s.stream_id, nva, len(headers), NULL)
        else:
            provider.source.ptr = <void *>self
            provider.read_callback = _grpc_read_response
            rc = nghttp2_submit_response2(s.conn.session, s.stream_id, nva, len(headers),
                                          &provider)
        PyMem_Free(nva)
        if rc != 0:
            s.reset(NGHTTP2_INTERNAL_ERROR)
            return
        self.kick()

    cdef void send_data(self, bytes data):
        if self.stream.state == C_CLOSED:
            return
        self.out.append(data)
        self.out_size += PyBytes_GET_SIZE(data)
        self.resume()

    cdef void send_trailers(self, list trailers):
        if self.stream.state == C_CLOSED:
            return
        self.trailers = trailers
        self.ended = True
        self.resume()

    cdef void resume(self):
        if self.deferred:
            self.deferred = False
            nghttp2_session_resume_data(self.stream.conn.session, self.stream.stream_id)
        self.kick()

    cdef void kick(self):
        """The stream has frames to send: now, or after the upstream frames being read."""
        if downstream_batch is not None:
            downstream_batch.add(self)
        else:
            self.stream.conn.flush()

    cdef void flush_out(self):
        self.stream.conn.flush()

    cdef void consume_request(self, size_t n):
        cdef H2Stream s = self.stream
        if s.state != C_CLOSED and n:
            nghttp2_session_consume_stream(s.conn.session, s.stream_id, n)
            self.kick()

    cdef void reset(self, uint32_t error_code):
        self.stream.reset(error_code)

    cdef void call_done(self, GrpcCall call):
        """The call is over: the exchange logs it (status, upstream, latency) and lets go of
        the stream, unless it never started (an answer of the Exchange's own ended it)."""
        cdef Exchange ex = self.ex
        self.ex = None
        # a closed stream (the client's reset) is logged by the stream, as an abandoned request
        if ex is not None and call.started and self.stream.state != C_CLOSED:
            ex.end_grpc_call(call.node, call.http_status, call.grpc_status)


cdef nghttp2_ssize _grpc_read_response(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                                       size_t length, uint32_t *data_flags,
                                       nghttp2_data_source *source,
                                       void *user_data) noexcept:
    """Frames response DATA for the client as its windows allow; what is framed is then
    acknowledged to the upstream (its window reopens as fast as the client's)."""
    cdef H2GrpcDownstream d = <H2GrpcDownstream>source.ptr
    cdef size_t n
    cdef list trailers
    cdef nghttp2_nv *nva
    try:
        n = h2_take_chunks(d.out, &d.out_first, buf, length)
        d.out_size -= n
        if n and d.call is not None:
            d.call.on_response_sent(n)
        if d.out_size == 0:
            if d.trailers is not None:
                trailers = d.trailers
                d.trailers = None
                data_flags[0] |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM
                nva = h2_nv_array(trailers)
                nghttp2_submit_trailer(session, stream_id, nva, len(trailers))
                PyMem_Free(nva)
            elif d.ended:
                data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
            elif n == 0:
                d.deferred = True
                return NGHTTP2_ERR_DEFERRED
    except Exception:
        log.exception("gRPC response framing failed")
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    return <nghttp2_ssize>n
