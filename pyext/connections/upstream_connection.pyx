cdef inline bint relays_transfer_coding(gw_response_head *r):
    """The response's Transfer-Encoding goes to the client as it came (the parser left it
    not hop-by-hop): its body is in codings the gateway does not decode."""
    cdef uint32_t i
    for i in range(r.n_headers):
        if r.headers[i].flags & (GW_HF_TRANSFER_ENCODING | GW_HF_HOP_BY_HOP) == \
                GW_HF_TRANSFER_ENCODING:
            return True
    return False


cdef class UpstreamConnection:

    def __cinit__(self):
        self.chunked = gw_chunked_new()

    def __dealloc__(self):
        if self.chunked != NULL:
            gw_chunked_free(self.chunked)
            self.chunked = NULL

    def __init__(self, Server server, UpstreamNode node):
        self.server = server
        self.node = node
        self.set_state(U_CONNECTING)
        self.pending = bytearray()
        self.requests = 0
        self.deadline = 0
        self.reading_paused = False

    # asyncio protocol callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.server.pool.track(self)
        set_tcp_nodelay(transport)

    def connection_lost(self, exc):
        cdef Exchange ex = self.ex
        cdef int previous = self.state
        self.set_state(U_CLOSED)
        self.server.pool.untrack(self)
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
                self.set_state(U_CLOSED)
                self.transport.abort()
                ex.on_upstream_failed(502, "invalid response from upstream")
                return
            if self.head.status == 101:
                if ex.upgrading:
                    self.set_state(U_TUNNEL)
                    try:
                        ex.on_upgraded(self, buf, n)
                    except HeadSpanError as exc:
                        self.refuse_head(ex, exc)
                    return
                self.set_state(U_CLOSED)
                self.transport.abort()
                ex.on_upstream_failed(502, "upstream switched protocols unasked")
                return
            if 100 <= self.head.status < 200:
                try:
                    ex.relay_informational(self, buf, n)
                except HeadSpanError as exc:
                    self.refuse_head(ex, exc)
                    return
                if n == PyBytes_GET_SIZE(buf):
                    return
                data = buf[n:]
                continue
            break
        if ex.version_minor != 1 and self.head.body_kind != GW_BODY_LENGTH and \
                self.head.body_kind != GW_BODY_NONE and relays_transfer_coding(&self.head):
            # RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client (HTTP/2 has none), and
            # the gateway does not decode the codings the body is in
            log.warning("upstream %s:%d sent a transfer-coded body, which an HTTP/%s client "
                        "cannot receive", self.node.host, self.node.port,
                        "1.0" if ex.version_minor == 0 else "2")
            self.set_state(U_CLOSED)
            self.transport.abort()
            ex.on_response_unrelayable(self.head.status)
            return
        self.set_state(U_BODY)
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
        self.set_state(U_CLOSED)
        self.transport.abort()
        ex.on_head_refused()

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
                self.set_state(U_CLOSED)
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
            self.set_state(U_CLOSED)
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
            log.warning("upstream timed out after %.3f s while %s upstream %s:%d",
                        now - self.sent_at, phase, self.node.host, self.node.port)
            self.ex = None
            self.set_state(U_CLOSED)
            self.transport.abort()
            (<Exchange>ex).on_upstream_failed(504, "upstream timed out")
        else:
            self.close()

    cdef bint is_open(self):
        return self.transport is not None and not self.transport.is_closing()

    cdef void set_state(self, UpstreamState new_state):
        self.state = new_state

    cdef void park(self, double idle_timeout):
        """Into the pool: idle, owned by no exchange, closed by the sweep after
        ``idle_timeout`` (or when the upstream closes it first)."""
        self.set_state(U_IDLE)
        self.ex = None
        self.idle_timeout = idle_timeout
        self.deadline = now_monotonic() + idle_timeout
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    cdef void expect_response_within(self, double seconds):
        """More request body went out: the upstream has ``seconds`` from now to answer or
        read on (only until its first response byte; then the read timeout runs)."""
        if not self.got_response_bytes:
            self.deadline = now_monotonic() + seconds

    cdef void send(self, Exchange ex, list parts, bint body_done):
        cdef double now = now_monotonic()
        self.ex = ex
        self.set_state(U_HEAD)
        self.got_response_bytes = False
        self.pending.clear()
        # a connection that carried a request before may have been closed by the upstream
        # meanwhile: the exchange retries such a stale connection once
        self.reused = self.requests > 0
        self.requests += 1
        self.sent_at = now
        self.deadline = now + (ex.read_timeout if body_done else ex.group.send_timeout)
        if len(parts) == 1:
            self.write(parts[0])
        else:
            self.transport.writelines(parts)

    cdef void close(self):
        if self.state != U_CLOSED:
            self.set_state(U_CLOSED)
            self.ex = None
            self.server.pool.forget(self)
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
