cdef class ClientConnection:

    def __cinit__(self):
        self.chunked = gw_chunked_new()

    def __dealloc__(self):
        if self.chunked != NULL:
            gw_chunked_free(self.chunked)
            self.chunked = NULL

    def __init__(self, Server server, bint on_tls_listener=False):
        self.server = server
        self.on_tls_listener = on_tls_listener
        self.pending = bytearray()
        self.set_state(C_IDLE)
        self.client_ip = b"unknown"
        self.client_port = 0

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.server.add_client(self)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
            self.client_port = peer[1] if len(peer) > 1 else 0
        set_tcp_nodelay(transport)
        if self.on_tls_listener:
            self.tls = TlsSession(transport.get_extra_info("tls"))
            self.tls_refusal = self.tls.refusal()
            if self.tls.alpn_protocol == "h2":
                hand_to_h2(self, None)  # the client chose HTTP/2 in the handshake
                return
        # Until the first byte the idle timer applies; the header timer starts with the head.
        # Accepted while draining (already queued when the listener closed): served, with
        # Connection: close, rather than reset.
        self.deadline = now_monotonic() + self.server.runtime.header_timeout

    def connection_lost(self, exc):
        cdef Exchange ex = self.ex
        if self.state == C_TUNNEL and ex is not None:
            self.set_state(C_CLOSED)
            self.server.drop_client(self)
            self.ex = None
            ex.end_tunnel()
            return
        self.set_state(C_CLOSED)
        self.server.drop_client(self)
        self.deadline = 0
        if ex is not None:
            self.ex = None
            ex.on_client_lost()

    def eof_received(self):
        # A half-closed client still gets its in-flight response; then the connection closes.
        if self.state == C_ACTIVE and self.ex is not None:
            self.ex.end_keep_alive()
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

    cdef void set_state(self, ClientState new_state):
        self.state = new_state

    cdef void become_tunnel(self):
        """The upstream accepted an upgrade: bytes flow both ways untouched, with no deadline
        of the HTTP exchange (the tunnel's peers keep it alive or close it)."""
        self.set_state(C_TUNNEL)
        self.deadline = 0

    cdef void hold_reading_for_backlog(self, bint hold):
        """Request body is waiting for an upstream connection: stop reading above the buffer
        limit, and go on once the exchange has sent what it held."""
        if self.reading_paused_backlog != hold:
            self.reading_paused_backlog = hold
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
        if self.tls_refusal is not None:
            self.reject(400, self.tls_refusal)
            return
        if self.requests == 0 and self.tls is None and data[0] == 0x50 and \
                take_h2c_preface(self, data):  # "P": h2c with prior knowledge?
            return
        self.processing = True
        try:
            while data is not None and (self.state == C_IDLE or self.state == C_HEAD):
                runtime = self.server.runtime
                n = gw_parse_request(<const uint8_t *>PyBytes_AS_STRING(data),
                                     PyBytes_GET_SIZE(data), &runtime.limits, &self.head, &reason)
                if n == 0:
                    if self.state == C_IDLE:
                        self.set_state(C_HEAD)
                        self.deadline = now_monotonic() + runtime.header_timeout
                    self.pending += data
                    return
                if n < 0:
                    self.reject(-n, (<bytes>reason).decode(errors="replace")
                                if reason != NULL else "bad request")
                    return
                if self.head.upgrade and self.requests == 0 and self.tls is None and \
                        take_h2c_upgrade(self, data, n):
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
        ex.init_request(self, runtime, data, h)
        self.ex = ex
        self.set_state(C_ACTIVE)
        self.requests += 1
        self.server.requests_total += 1
        self.deadline = 0 if ex.body_done else now_monotonic() + runtime.body_timeout
        if h.body_kind == GW_BODY_CHUNKED:
            gw_chunked_reset(self.chunked)
        if runtime.max_body and h.body_kind == GW_BODY_LENGTH and h.content_length > runtime.max_body:
            ex.respond_error(413, "request body too large")
            return ex
        if h.method_id == GW_METHOD_CONNECT:
            # No tunnels through the gateway: RFC 9110 section 9.1 (a method the server does not
            # implement: 501); forwarding it would send an origin-form CONNECT no server can read.
            # Closed after: the client may already be sending tunnel bytes.
            ex.end_keep_alive()
            ex.respond_error(501, "CONNECT is not supported")
            return ex
        if h.method_id == GW_METHOD_TRACE and h.body_kind != GW_BODY_NONE:
            # RFC 9110 section 9.3.8: a client MUST NOT send content in TRACE, and the gateway
            # would be that client to its upstream
            ex.end_keep_alive()
            ex.respond_error(400, "TRACE with content")
            return ex
        if (h.method_id == GW_METHOD_OPTIONS or h.method_id == GW_METHOD_TRACE) and \
                max_forwards_left(h, d) == 0:
            # RFC 9110 section 7.6.2: with Max-Forwards 0 an intermediary MUST NOT forward an
            # OPTIONS or TRACE; it MUST respond as the final recipient (TRACE: the request it
            # received, as message/http, RFC 9110 section 9.3.8)
            if h.method_id == GW_METHOD_OPTIONS:
                ex.respond_local(200, b"", None, KEEP)
            else:
                ex.respond_local(200, data[:h.head_len], MESSAGE_HTTP_HEADERS, KEEP)
            return ex
        if h.method_id == GW_METHOD_OPTIONS and h.target.len == 1 and d[h.target.off] == b'*':
            # OPTIONS * asks about the server itself (RFC 9110 section 9.3.7): answered here, with
            # no content and so Content-Length: 0, which that section requires
            ex.respond_local(200, b"", None, KEEP)
            return ex
        if self.tls is not None and self.server.tls_misdirected is not None and h.has_host and \
                self.server.tls_misdirected(data[h.host.off:h.host.off + h.host.len],
                                            self.tls.ssl_id):
            # RFC 9110 section 15.5.20: this connection cannot answer for that host
            ex.end_keep_alive()
            ex.respond_error(421, "Misdirected Request")
            return ex
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
            if code == ROUTE_BAD_PATH:
                ex.respond_error(400, "bad request path")
            else:
                ex.respond_error(404, "404 Route Not Found")
            return ex
        norm = gw_params_path(params, &norm_len, &changed)
        ex.set_route(<RouteEntry>runtime.routes[code],
                     match_params(params) if gw_params_count(params) else None,
                     PyBytes_FromStringAndSize(<const char *>norm, norm_len) if changed else None)
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
            consumed = ex.count_length_body(size)
            if consumed < size:
                rest = data[consumed:]
                data = data[:consumed]
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
                ex.count_chunked_body_end()
        self.deadline = 0 if ex.body_done else now_monotonic() + runtime.body_timeout
        if not ex.response_done:
            ex.on_request_body(data)
        return rest

    cdef void fail_request_body(self, int status, str message):
        cdef Exchange ex = self.ex
        ex.end_keep_alive()
        if not ex.response_started:
            ex.respond_error(status, message)
        if self.state != C_LINGER:
            self.abort()

    cdef void write_head(self, bytes head):
        if self.state != C_CLOSED:
            self.transport.write(head)

    cdef void hold_head(self, bytes head):
        """A response head to send with the first body bytes (or at ``flush_head``); None
        drops a held head that must not go out (the upstream's head was refused)."""
        self.held_head = head

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
        self.set_state(C_IDLE)
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
            self.server.scratch, status, error_body(reason), JSON_HEADERS, True, False)
        self.pending.clear()
        if self.state != C_CLOSED:
            self.transport.write(out)
            self.linger()

    cdef void linger(self):
        """Half-closes after the response and drops further input for a moment, so the client
        reads the response instead of a reset caused by unread request bytes."""
        if self.state == C_CLOSED:
            return
        self.set_state(C_LINGER)
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
            self.set_state(C_CLOSED)
            self.server.drop_client(self)
            if self.transport is not None:
                self.transport.abort()

    cdef void close(self):
        if self.state != C_CLOSED:
            self.set_state(C_CLOSED)
            self.server.drop_client(self)
            if self.transport is not None:
                self.transport.close()

    cdef void drain(self, double until):
        """The worker drains: an idle connection closes at ``until`` (0: now); a busy one
        says Connection: close with its response."""
        if self.state == C_IDLE:
            if until == 0:
                self.close()
            elif self.deadline == 0 or self.deadline > until:
                self.deadline = until


MESSAGE_HTTP_HEADERS = (("Content-Type", "message/http"),)
