cdef bytes H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

cdef enum:
    # CVE-2023-44487 (rapid reset): a client may reset this many streams at once, then this
    # many per second (nghttp2's own defaults, stated here so they stay ours); past that the
    # connection ends with GOAWAY ENHANCE_YOUR_CALM.
    H2_RESET_BURST = 1000
    H2_RESET_RATE = 33
    # CVE-2024-27316 (CONTINUATION flood): CONTINUATION frames allowed in one header block.
    H2_MAX_CONTINUATIONS = 8
    # SETTINGS entries one frame may carry.
    H2_MAX_SETTINGS = 32

# While streams are open the sweep visits the connection this often for their deadlines.
DEF H2_SWEEP_SECONDS = 1.0

# nghttp2's callbacks and options, made once at import: every session shares them (user_data
# is the H2Connection, a stream's data source its H2Stream).
cdef nghttp2_session_callbacks *h2_server_callbacks = h2_new_callbacks(
    h2_on_begin_headers, h2_on_header, h2_on_frame_recv, h2_on_data, h2_on_stream_close,
    h2_on_frame_send)
# nghttp2's HTTP messaging checks stay on (no NGHTTP2_OPT_NO_HTTP_MESSAGING): a field whose
# name or value has a byte the HTTP/1.1 parser refuses is dropped before h2_on_header, and
# gw_request_from_fields relies on that instead of scanning the fields again.
cdef nghttp2_option *h2_server_option = h2_new_option()
# CVE-2023-44487: streams a client resets, a token bucket (nghttp2's defaults)
nghttp2_option_set_stream_reset_rate_limit(h2_server_option, H2_RESET_BURST, H2_RESET_RATE)
# CVE-2024-27316: CONTINUATION frames per header block
nghttp2_option_set_max_continuations(h2_server_option, H2_MAX_CONTINUATIONS)
nghttp2_option_set_max_settings(h2_server_option, H2_MAX_SETTINGS)


cdef class H2Connection(ClientConnection):
    """An HTTP/2 client connection: nghttp2 parses and frames (``mem_recv2`` on each read,
    ``mem_send2`` for what is due), its callbacks open H2Streams, and each stream's request
    runs as an Exchange. It takes over the transport of the ClientConnection that accepted it
    (ALPN "h2" after the TLS handshake, or the h2c preface on the plain listener)."""

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        h2_buf_free(&self.names)
        h2_buf_free(&self.fields)
        h2_buf_free(&self.sendbuf)

    cdef void start(self, bytes first, bytes upgrade_settings=None, bytes request=None,
                    gw_request_head *head=NULL) except *:
        """Creates the session, queues the server SETTINGS and reads ``first`` (bytes the
        accepting connection already received). After an h2c Upgrade, ``request`` (parsed
        into ``head``) is stream 1 and ``upgrade_settings`` the client's HTTP2-Settings."""
        cdef Runtime runtime = self.server.runtime
        self.streams = {}
        self.max_header_list_size = runtime.h2_max_header_list_size
        if nghttp2_session_server_new2(&self.session, h2_server_callbacks, <void *>self,
                                       h2_server_option) != 0:
            raise MemoryError()
        h2_submit_settings(self.session, runtime.h2_max_concurrent_streams,
                           runtime.h2_max_header_list_size, 0)
        self.set_state(C_IDLE)
        self.deadline = now_monotonic() + runtime.keepalive_timeout
        if upgrade_settings is not None:
            self.run_upgraded_request(upgrade_settings, request, head)
        if self.server.draining:
            self.goaway(NGHTTP2_NO_ERROR)
        if first:
            self.data_received(first)
        else:
            self.flush()

    cdef void run_upgraded_request(self, bytes settings, bytes request,
                                   gw_request_head *head) except *:
        """The HTTP/1.1 request that asked for h2c is stream 1, half closed: its response
        goes out as HTTP/2 (RFC 7540 section 3.2)."""
        cdef H2Stream s
        cdef Exchange ex
        if nghttp2_session_upgrade2(self.session, <const uint8_t *>PyBytes_AS_STRING(settings),
                                    PyBytes_GET_SIZE(settings),
                                    head.method_id == GW_METHOD_HEAD, NULL) != 0:
            nghttp2_session_terminate_session(self.session, NGHTTP2_PROTOCOL_ERROR)
            return
        self.open_stream(1)
        s = <H2Stream>self.streams[1]
        s.head = head[0]
        s.head.version_minor = 2
        s.head.upgrade = 0  # the Upgrade was to HTTP/2, not something for the upstream
        s.head.keep_alive = 1
        s.method = request[head.method.off:head.method.off + head.method.len]
        s.remote_closed = True
        ex = s.begin(request, self.server.runtime)
        if s.ex is ex and not ex.response_started:
            ex.start()

    def data_received(self, bytes data):
        cdef nghttp2_ssize rc
        if self.session == NULL or self.state == C_CLOSED:
            return
        self.in_recv = True
        try:
            rc = nghttp2_session_mem_recv2(self.session, <const uint8_t *>PyBytes_AS_STRING(data),
                                           PyBytes_GET_SIZE(data))
        finally:
            self.in_recv = False
        if rc < 0:
            # A connection error: the client is told why (GOAWAY) and the connection closes
            # once that is sent (flush sees the session wants neither to read nor to write).
            log.info("HTTP/2 connection from %s:%d ended: %s", self.client_ip.decode(),
                     self.client_port, h2_error_text(rc))
            if rc == NGHTTP2_ERR_BAD_CLIENT_MAGIC or rc == NGHTTP2_ERR_NOMEM:
                self.abort()
                return
            nghttp2_session_terminate_session(
                self.session, NGHTTP2_ENHANCE_YOUR_CALM
                if rc == NGHTTP2_ERR_FLOODED or rc == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                else NGHTTP2_PROTOCOL_ERROR)
        self.flush()

    def connection_lost(self, exc):
        cdef H2Stream s
        self.set_state(C_CLOSED)
        self.server.drop_client(self)
        self.deadline = 0
        for s in list(self.streams.values()):
            s.on_closed(NGHTTP2_CANCEL)
        self.streams.clear()

    def eof_received(self):
        # the client sends no more frames: streams in flight still get their responses
        return bool(self.streams)

    def pause_writing(self):
        self.writing_paused = True
        self.send_buffered = self.transport.get_write_buffer_size()
        self.send_deadline = now_monotonic() + self.server.runtime.send_timeout

    def resume_writing(self):
        self.writing_paused = False
        self.send_deadline = 0
        self.flush()

    cdef void open_stream(self, int32_t stream_id) except *:
        cdef H2Stream s = H2Stream.__new__(H2Stream)
        s.server = self.server
        s.conn = self
        s.stream_id = stream_id
        s.transport = self.transport
        s.write = None
        s.client_ip = self.client_ip
        s.client_port = self.client_port
        s.tls = self.tls
        s.tls_refusal = self.tls_refusal
        s.on_tls_listener = self.on_tls_listener
        s.pending = bytearray()
        self.fields.len = 0  # a new header block begins
        s.out = []
        s.state = C_HEAD
        self.streams[stream_id] = s
        nghttp2_session_set_stream_user_data(self.session, stream_id, <void *>s)
        if self.state == C_IDLE:
            self.set_state(C_ACTIVE)
            self.deadline = now_monotonic() + H2_SWEEP_SECONDS

    cdef void put_field(self, const uint8_t *name, size_t namelen, const uint8_t *value,
                        size_t valuelen) except *:
        """Appends ``name: value\\r\\n`` to the header block being read: one C buffer per
        connection instead of Python bytes per field."""
        cdef size_t need = self.fields.len + namelen + valuelen + 4
        cdef uint8_t *p
        h2_buf_reserve(&self.fields, need)
        p = self.fields.data + self.fields.len
        memcpy(p, name, namelen)
        p += namelen
        p[0] = b':'
        p[1] = b' '
        p += 2
        memcpy(p, value, valuelen)
        p += valuelen
        p[0] = b'\r'
        p[1] = b'\n'
        self.fields.len = need

    cdef bytes render_head(self, bytes method, bytes target, bytes authority, bytes cookie,
                           bint chunked, gw_request_head *h):
        """The header block just read as an HTTP/1.1 head, built in one allocation, with
        ``h``'s spans set to where each part went: the request line's, the Host line's from
        ``authority`` (entry 0), the block's fields (recorded by H2Stream.record_field relative
        to the block), then the joined cookie and the chunked framing, when there are."""
        cdef size_t total = PyBytes_GET_SIZE(method) + PyBytes_GET_SIZE(target) + 14 + \
            self.fields.len
        cdef bytes data
        cdef char *start
        cdef char *w
        cdef uint32_t n = h.n_headers, i, base
        if authority is not None:
            total += 8 + PyBytes_GET_SIZE(authority)
            if n == 0:
                n = 1
        if cookie is not None:
            total += 10 + PyBytes_GET_SIZE(cookie)
        if chunked:
            total += 28
        data = PyBytes_FromStringAndSize(NULL, total)
        w = start = PyBytes_AS_STRING(data)
        h.method = span_of(0, PyBytes_GET_SIZE(method))
        w = put_bytes(w, method)
        w[0] = b' '
        h.target = span_of(w + 1 - start, PyBytes_GET_SIZE(target))
        w = put_bytes(w + 1, target)
        memcpy(w, b" HTTP/1.1\r\n", 11)
        w += 11
        if authority is not None:
            h.headers[0].name = span_of(w - start, 4)
            h.headers[0].value = span_of(w + 6 - start, PyBytes_GET_SIZE(authority))
            memcpy(w, b"host: ", 6)
            w = put_bytes(w + 6, authority)
            memcpy(w, b"\r\n", 2)
            w += 2
        base = <uint32_t>(w - start)
        for i in range(1 if authority is not None else 0, min(n, GW_MAX_HEADERS)):
            h.headers[i].name.off += base
            h.headers[i].value.off += base
        if self.fields.len:
            memcpy(w, self.fields.data, self.fields.len)
            w += self.fields.len
        self.fields.len = 0
        if cookie is not None:
            if n < GW_MAX_HEADERS:
                h.headers[n].name = span_of(w - start, 6)
                h.headers[n].value = span_of(w + 8 - start, PyBytes_GET_SIZE(cookie))
            n += 1
            memcpy(w, b"cookie: ", 8)
            w = put_bytes(w + 8, cookie)
            memcpy(w, b"\r\n", 2)
            w += 2
        if chunked:
            if n < GW_MAX_HEADERS:
                h.headers[n].name = span_of(w - start, 17)
                h.headers[n].value = span_of(w + 19 - start, 7)
            n += 1
            memcpy(w, b"transfer-encoding: chunked\r\n", 28)
            w += 28
        memcpy(w, b"\r\n", 2)
        h.n_headers = n
        h.head_len = <uint32_t>total
        return data

    cdef void stream_gone(self, H2Stream s):
        self.streams.pop(s.stream_id, None)
        if not self.streams and self.state == C_ACTIVE:
            self.set_state(C_IDLE)
            self.deadline = now_monotonic() + (
                DRAIN_IDLE_GRACE if self.server.draining else self.server.runtime.keepalive_timeout)

    cdef void flush(self):
        """Sends what the session has due, unless inside nghttp2 (sent when it returns) or the
        client's socket is full (sent on resume_writing). Closes the connection when nghttp2
        wants neither to read nor to write (after GOAWAY, or a connection error)."""
        cdef int rc
        if self.in_recv or self.flushing or self.session == NULL or self.state == C_CLOSED:
            return
        self.flushing = True
        try:
            rc = h2_send_due(self.session, self.transport, &self.sendbuf, &self.writing_paused)
        finally:
            self.flushing = False
        if rc < 0:
            log.warning("HTTP/2 session error: %s", h2_error_text(rc))
            self.abort()
        elif h2_session_done(self.session):
            ClientConnection.close(self)

    cdef void flush_soon(self):
        """Output from the upstream side (responses, window updates): sent once at the end
        of this event-loop turn, so the streams answered in one turn share one write."""
        if self.in_recv or self.flush_pending or self.state == C_CLOSED:
            return  # inside mem_recv2 the read's own flush sends it
        self.flush_pending = True
        self.server.loop.call_soon(self.run_flush)

    def run_flush(self):
        self.flush_pending = False
        self.flush()

    cdef void goaway(self, uint32_t error_code):
        """No new streams: the ones already opened finish (graceful GOAWAY)."""
        if self.goaway_sent or self.session == NULL:
            return
        self.goaway_sent = True
        nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(self.session),
                              error_code, NULL, 0)
        self.flush()

    cdef void drain(self, double until):
        self.goaway(NGHTTP2_NO_ERROR)
        if not self.streams and self.state != C_CLOSED:
            self.deadline = until

    cdef void on_timeout(self, double now):
        cdef H2Stream s
        if self.state == C_IDLE:
            # keep-alive timeout, or a draining worker's grace: GOAWAY, then close
            self.goaway(NGHTTP2_NO_ERROR)
            self.close()
            return
        for s in list(self.streams.values()):
            if s.deadline and now >= s.deadline:
                s.on_timeout(now)
        self.flush()
        if self.state == C_ACTIVE:
            self.deadline = now + H2_SWEEP_SECONDS

    cdef void abort(self):
        ClientConnection.abort(self)

    cdef void close(self):
        if self.state != C_CLOSED:
            self.goaway(NGHTTP2_NO_ERROR)
            ClientConnection.close(self)


cdef inline char *put_bytes(char *w, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(w, PyBytes_AS_STRING(b), n)
    return w + n


cdef bint take_h2c_preface(ClientConnection c, bytes data) except -1:
    """On a plain connection's first bytes: True when they are (or begin) the HTTP/2
    connection preface, which then hands the connection to an H2Connection (h2c with prior
    knowledge, RFC 9113 3.3)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if n < 24:
        if H2_PREFACE.startswith(data):
            c.pending += data  # the rest of the preface is on its way
            return True
        return False
    if memcmp(PyBytes_AS_STRING(data), PyBytes_AS_STRING(H2_PREFACE), 24) != 0:
        return False
    hand_to_h2(c, data)
    return True


cdef bint take_h2c_upgrade(ClientConnection c, bytes data, int32_t n) except -1:
    """The first request on a plain connection asks ``Upgrade: h2c`` with HTTP2-Settings:
    101, and the connection (this request as stream 1) goes on as HTTP/2. A request with a
    body is served over HTTP/1.1 instead (the upgrade is optional for the server)."""
    cdef gw_request_head *h = &c.head
    cdef uint32_t i
    cdef gw_header *e
    cdef bytes settings = None
    cdef bint wanted = False
    if h.body_kind != GW_BODY_NONE:
        return False
    for i in range(h.n_headers):
        e = &h.headers[i]
        if e.flags & GW_HF_UPGRADE:
            wanted = b"h2c" in [t.strip().lower() for t in
                                data[e.value.off:e.value.off + e.value.len].split(b",")]
        elif e.name.len == 14 and data[e.name.off:e.name.off + 14].lower() == b"http2-settings":
            settings = data[e.value.off:e.value.off + e.value.len]
    if not wanted or settings is None:
        return False
    try:
        settings = base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
    except ValueError:
        return False
    c.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      b"Upgrade: h2c\r\n\r\n")
    hand_to_h2(c, data[n:] if n < PyBytes_GET_SIZE(data) else None, settings, data)
    return True


cdef void hand_to_h2(ClientConnection c, bytes first, bytes upgrade_settings=None,
                     bytes request=None) except *:
    """``c``'s transport now speaks HTTP/2 (ALPN h2, the h2c preface or Upgrade): an
    H2Connection takes it over, and ``c`` leaves the server's client set without counting as
    closed."""
    cdef H2Connection h = H2Connection.__new__(H2Connection)
    h.server = c.server
    h.pending = bytearray()
    h.transport = c.transport
    h.write = c.transport.write
    h.client_ip = c.client_ip
    h.client_port = c.client_port
    h.on_tls_listener = c.on_tls_listener
    h.tls = c.tls
    h.tls_refusal = c.tls_refusal
    c.server.replace_client(c, h)
    c.transport.set_protocol(h)
    c.set_state(C_CLOSED)
    c.transport = None
    h.start(first, upgrade_settings, request, &c.head)


# -- nghttp2 callbacks: they run inside mem_recv2 / mem_send2 and must not raise --

cdef int h2_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                             void *user_data) noexcept:
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0
    try:
        (<H2Connection>user_data).open_stream(frame.hd.stream_id)
    except BaseException:
        log.exception("HTTP/2: opening a stream failed")
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int h2_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                      size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                      void *user_data) noexcept:
    cdef void *p
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0  # trailers: the HTTP/1.1 upstream request carries none
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p == NULL:
        return 0
    try:
        (<H2Stream>p).add_field(name, namelen, value, valuelen)
    except BaseException:
        log.exception("HTTP/2: a request field failed")
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    return 0


cdef int h2_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                          void *user_data) noexcept:
    cdef void *p
    cdef bint end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0
    if frame.hd.type != NGHTTP2_HEADERS and frame.hd.type != NGHTTP2_DATA:
        return 0
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p == NULL:
        return 0
    try:
        if frame.hd.type == NGHTTP2_HEADERS and frame.headers.cat == NGHTTP2_HCAT_REQUEST:
            (<H2Stream>p).on_headers_done(end_stream)
        elif end_stream:
            (<H2Stream>p).on_end_stream()
    except BaseException:
        log.exception("HTTP/2: a request failed")
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    return 0


cdef int h2_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                    const uint8_t *data, size_t size, void *user_data) noexcept:
    cdef void *p = nghttp2_session_get_stream_user_data(session, stream_id)
    # The connection window reopens at once: one slow upstream holds back only its stream.
    nghttp2_session_consume_connection(session, size)
    if p == NULL:
        return 0
    try:
        (<H2Stream>p).on_data(data, size)
    except BaseException:
        log.exception("HTTP/2: request body failed")
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    return 0


cdef int h2_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                            void *user_data) noexcept:
    cdef void *p = nghttp2_session_get_stream_user_data(session, stream_id)
    if p == NULL:
        return 0
    try:
        (<H2Stream>p).on_closed(error_code)
    except BaseException:
        log.exception("HTTP/2: closing a stream failed")
    return 0


cdef int h2_on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                          void *user_data) noexcept:
    """The response ended while the request body was still coming: the rest is not wanted
    (RFC 9113 8.1: RST_STREAM NO_ERROR once the response is complete)."""
    cdef void *p
    if not (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) or (
            frame.hd.type != NGHTTP2_DATA and frame.hd.type != NGHTTP2_HEADERS):
        return 0
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p != NULL and not (<H2Stream>p).remote_closed:
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame.hd.stream_id,
                                  NGHTTP2_NO_ERROR)
    return 0
