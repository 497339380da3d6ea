cdef enum:
    H2_STREAM_BUFFER_HIGH = 65536   # response bytes held for one stream before its upstream pauses
    H2_STREAM_BUFFER_LOW = 16384    # ... and resumes
    H2_MAX_RESPONSE_FIELDS = 130    # GW_MAX_HEADERS + :status + slack

# Fields HTTP/2 forbids (RFC 9113 8.2.2) or that only frame an HTTP/1.1 message: dropped when an
# HTTP/1.1 head becomes HEADERS.
cdef uint32_t H1_ONLY_FIELDS = GW_HF_HOP_BY_HOP | GW_HF_TRANSFER_ENCODING | GW_HF_CONNECTION | \
    GW_HF_UPGRADE


cdef class H2Stream(ClientConnection):
    """One request stream. It is the Exchange's client: the request arrives as HEADERS and
    DATA and is handed on as the HTTP/1.1 head a plain connection's parser would make of it
    (built from the fields, checked alike: one Rust call), so the Exchange, routing, plugins and
    limits run unchanged; the Exchange's
    response head and body come back through ``hold_head`` / ``write_body`` / ``write_head``
    and leave as HEADERS and DATA. Flow control follows the upstream: request DATA is
    acknowledged (WINDOW_UPDATE) only once the upstream connection took it, and the upstream is
    paused while this stream's response bytes wait for the client's window."""

    cdef void add_field(self, const uint8_t *name, size_t namelen, const uint8_t *value,
                        size_t valuelen) except *:
        self.header_list_size += namelen + valuelen + 32  # RFC 9113 6.5.2's accounting
        if self.header_list_size > self.conn.max_header_list_size:
            self.too_large = True
        if self.too_large:
            return
        if namelen and name[0] == b':':
            field = PyBytes_FromStringAndSize(<const char *>value, valuelen)
            if namelen == 7 and memcmp(name, b":method", 7) == 0:
                self.method = field
            elif namelen == 5 and memcmp(name, b":path", 5) == 0:
                self.path = field
            elif namelen == 10 and memcmp(name, b":authority", 10) == 0:
                self.authority = field
            return  # :scheme: the gateway's own scheme is what upstreams are told
        if namelen == 6 and memcmp(name, b"cookie", 6) == 0:
            field = PyBytes_FromStringAndSize(<const char *>value, valuelen)
            self.cookie = field if self.cookie is None else self.cookie + b"; " + field
            return
        if namelen == 4 and memcmp(name, b"host", 4) == 0 and self.authority is not None:
            return  # :authority wins (RFC 9113 8.3.1); nghttp2 checked they agree
        if namelen == 14 and memcmp(name, b"content-length", 14) == 0:
            self.has_length = True
        elif namelen == 6 and memcmp(name, b"expect", 6) == 0:
            return  # no 100-continue on HTTP/2: DATA flows under flow control instead
        self.record_field(namelen, valuelen)
        self.conn.put_field(name, namelen, value, valuelen)

    cdef void record_field(self, size_t namelen, size_t valuelen):
        """The head entry of the field put_field is about to write: its spans, relative to the
        header block until render_head places the block. Entry 0 is the Host line made from
        :authority (pseudo-header fields come first: RFC 9113 8.3); past GW_MAX_HEADERS only
        the count grows, for the 431."""
        cdef gw_request_head *h = &self.head
        cdef size_t at = self.conn.fields.len
        if h.n_headers == 0 and self.authority is not None:
            h.n_headers = 1
        if h.n_headers < GW_MAX_HEADERS:
            h.headers[h.n_headers].name = span_of(at, namelen)
            h.headers[h.n_headers].value = span_of(at + namelen + 2, valuelen)
        if h.n_headers <= GW_MAX_HEADERS:
            h.n_headers += 1

    cdef void on_headers_done(self, bint end_stream) except *:
        """The request's header block is complete: lay it out as the HTTP/1.1 head the
        Exchange reads (its entries known from the fields, checked as the HTTP/1.1 parser
        checks a head) and start its exchange, as ClientConnection.process does for a head
        read off the wire."""
        cdef const char *reason = NULL
        cdef int32_t n
        cdef Exchange ex
        cdef Runtime runtime = self.server.runtime
        self.remote_closed = end_stream
        if self.too_large:
            self.respond_plain(431, "request header fields too large")
            return
        if self.tls_refusal is not None:
            self.respond_plain(400, self.tls_refusal)
            return
        if not end_stream and not self.has_length:
            self.chunked_body = True  # a body of unknown length: chunked for the HTTP/1.1 side
        data = self.conn.render_head(self.method or b"GET", self.path if self.path is not None
                                     else (self.authority or b"/"), self.authority, self.cookie,
                                     self.chunked_body, &self.head)
        n = gw_request_from_fields(<const uint8_t *>PyBytes_AS_STRING(data),
                                   PyBytes_GET_SIZE(data), &runtime.limits, &self.head, &reason)
        if n <= 0:
            self.respond_plain(-n if n < 0 else 431, (<bytes>reason).decode(errors="replace")
                               if reason != NULL else "bad request")
            return
        # HTTP/2 marks itself to the Exchange and the request variables as version 2.0
        self.head.version_minor = 2
        self.head.keep_alive = 1
        self.deadline = 0
        ex = self.begin(data, runtime)
        if self.ex is ex:
            self.grpc = grpc_call_for(self, ex)
        if self.ex is ex and end_stream and self.chunked_body:
            self.on_end_stream()
        if self.ex is ex and not ex.response_started:
            ex.start()

    cdef void on_data(self, const uint8_t *data, size_t size) except *:
        cdef bytes chunk
        cdef Exchange ex = self.ex
        if self.grpc is not None:
            self.grpc.on_request_data(PyBytes_FromStringAndSize(<const char *>data, size), False)
            return
        if ex is None or ex.body_done or self.state == C_CLOSED:
            nghttp2_session_consume_stream(self.conn.session, self.stream_id, size)
            return
        if self.chunked_body:
            chunk = b"%x\r\n%b\r\n" % (size, data[:size])
        else:
            chunk = PyBytes_FromStringAndSize(<const char *>data, size)
        self.feed_body(chunk)
        # Acknowledged only if the upstream took it (its transport under the high water).
        if self.reading_paused_upstream or self.reading_paused_backlog:
            self.unconsumed += size
        else:
            nghttp2_session_consume_stream(self.conn.session, self.stream_id, size)

    cdef void on_end_stream(self) except *:
        self.remote_closed = True
        if self.grpc is not None:
            self.grpc.on_request_data(b"", True)
        elif self.chunked_body and self.ex is not None and not self.ex.body_done:
            self.feed_body(b"0\r\n\r\n")

    cdef void on_closed(self, uint32_t error_code) except *:
        """nghttp2 closed the stream (done, or reset by either side)."""
        cdef Exchange ex = self.ex
        self.release_upstream()
        self.set_state(C_CLOSED)
        self.out = None
        if self.grpc is not None:
            self.grpc.on_client_reset()  # a no-op once the call has ended
            self.grpc = None
        self.conn.stream_gone(self)
        if ex is not None:
            self.ex = None
            ex.on_client_lost()

    cdef void respond_plain(self, int status, str reason) except *:
        """A request refused before it has an exchange (nothing of it was routed)."""
        cdef bytes out = encode_local_response(
            self.server.scratch, status, error_body(reason), JSON_HEADERS, False,
            self.method == b"HEAD")
        self.submit_head(out, None, False)

    cdef void submit_head(self, bytes head, bytes body, bint more) except *:
        """Queues the response HEADERS from an HTTP/1.1 ``head`` the Exchange wrote (bytes
        past the head are body, as are ``body``); ``more``: body bytes may follow. Local
        responses and heads plugins rewrote come this way; a proxied head the Exchange did not
        change comes through hold_fields."""
        cdef H2Connection conn = self.conn
        cdef gw_response_head *r = &conn.rhead
        cdef const char *reason = NULL
        cdef const char *d = PyBytes_AS_STRING(head)
        cdef int32_t n
        cdef nghttp2_nv nva[H2_MAX_RESPONSE_FIELDS]
        cdef size_t nvlen = 1, i, j, off = 0
        cdef char status[3]
        cdef gw_header *e
        cdef uint8_t *name
        n = gw_parse_response(<const uint8_t *>d, PyBytes_GET_SIZE(head),
                              1 if self.method == b"HEAD" else 0, &conn_limits, r, &reason)
        if n <= 0:
            log.error("HTTP/2 stream %d: the response head could not be re-read (%s)",
                      self.stream_id, (<bytes>reason).decode() if reason != NULL else "incomplete")
            self.reset(NGHTTP2_INTERNAL_ERROR)
            return
        self.queue_inline_body(head, <size_t>n)
        h2_buf_reserve(&conn.names, n)
        status_digits(r.status, status)
        h2_nv_set(&nva[0], <const uint8_t *>b":status", 7, <const uint8_t *>status, 3)
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & H1_ONLY_FIELDS or nvlen >= H2_MAX_RESPONSE_FIELDS:
                continue
            # HTTP/2 field names are lowercase (RFC 9113 8.2.1)
            name = conn.names.data + off
            for j in range(e.name.len):
                name[j] = ascii_lower(<uint8_t>d[e.name.off + j])
            off += e.name.len
            if field_is_keep_alive(name, e.name.len):
                continue
            h2_nv_set(&nva[nvlen], name, e.name.len, <const uint8_t *>d + e.value.off,
                      e.value.len)
            nvlen += 1
        self.submit_nv(nva, nvlen, body, more)

    cdef void hold_fields(self, gw_response_head *r, bytes buf, int32_t n, size_t inline_body,
                          uint32_t drop) except *:
        """Holds the upstream's response (``r``, parsed from ``buf``'s first ``n`` bytes, then
        ``inline_body`` body bytes) as HEADERS fields, less ``drop`` and what HTTP/2 forbids,
        plus a Date if it had none: the same fields submit_head would take from the HTTP/1.1
        head the Exchange writes for it, without writing and re-reading that head. Packed
        (status, end of the fields, then per field its name's and value's lengths, the
        lowercased name and the value; the inline body last) so submit_fields only points into
        it."""
        cdef HeadBuffer hb = self.server.scratch
        cdef const char *d = PyBytes_AS_STRING(buf)
        cdef size_t dlen = <size_t>n, entry, i, j
        cdef uint32_t word[2]
        cdef uint32_t skip = drop | H1_ONLY_FIELDS
        cdef gw_header *e
        cdef bint has_date = False
        cdef bytes date
        hb.start()
        word[0] = <uint32_t>r.status
        word[1] = 0
        hb.add(<const char *>word, 8)
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & skip:
                continue
            if e.flags & GW_HF_DATE:
                has_date = True
            entry = hb.length
            word[0] = e.name.len
            word[1] = e.value.len
            hb.add(<const char *>word, 8)
            hb.add_span(d, dlen, e.name)
            # HTTP/2 field names are lowercase (RFC 9113 8.2.1)
            for j in range(entry + 8, hb.length):
                hb.data[j] = <char>ascii_lower(<uint8_t>hb.data[j])
            if field_is_keep_alive(<const uint8_t *>hb.data + entry + 8, e.name.len):
                hb.length = entry
                continue
            hb.add_span(d, dlen, e.value)
        if not has_date:
            # RFC 9110 6.6.1: a forwarded response without Date gets one ("Date: ...\r\n")
            date = date_field()
            word[0] = 4
            word[1] = <uint32_t>PyBytes_GET_SIZE(date) - 8
            hb.add(<const char *>word, 8)
            hb.add("date", 4)
            hb.add(PyBytes_AS_STRING(date) + 6, word[1])
        word[0] = <uint32_t>hb.length
        memcpy(hb.data + 4, word, 4)
        if inline_body:
            hb.add_span(d, <size_t>PyBytes_GET_SIZE(buf), span_of(n, inline_body))
        self.held_head = hb.take()
        self.held_is_fields = True

    cdef void submit_fields(self, bytes packed, bytes body, bint more) except *:
        """Queues the response HEADERS from hold_fields' ``packed`` fields."""
        cdef const uint8_t *d = <const uint8_t *>PyBytes_AS_STRING(packed)
        cdef nghttp2_nv nva[H2_MAX_RESPONSE_FIELDS]
        cdef size_t nvlen = 1, at = 8, end
        cdef uint32_t word[2]
        cdef char status[3]
        memcpy(word, d, 8)
        self.queue_inline_body(packed, word[1])
        status_digits(word[0], status)
        h2_nv_set(&nva[0], <const uint8_t *>b":status", 7, <const uint8_t *>status, 3)
        end = word[1]
        while at < end and nvlen < H2_MAX_RESPONSE_FIELDS:
            memcpy(word, d + at, 8)
            h2_nv_set(&nva[nvlen], d + at + 8, word[0], d + at + 8 + word[0], word[1])
            at += 8 + <size_t>word[0] + word[1]
            nvlen += 1
        self.submit_nv(nva, nvlen, body, more)

    cdef void submit_held(self, bytes held, bytes body, bint more) except *:
        if self.held_is_fields:
            self.held_is_fields = False
            self.submit_fields(held, body, more)
        else:
            self.submit_head(held, body, more)

    cdef void queue_inline_body(self, bytes buf, size_t n):
        """Body bytes behind the head's first ``n`` bytes in ``buf``: framed from ``buf``
        itself, past the head, not copied."""
        if n >= <size_t>PyBytes_GET_SIZE(buf):
            return
        if self.out:
            self.out.append(buf[n:])
        else:
            self.out.append(buf)
            self.out_first = n
        self.out_size += PyBytes_GET_SIZE(buf) - n

    cdef void submit_nv(self, nghttp2_nv *nva, size_t nvlen, bytes body, bint more) except *:
        """Submits the HEADERS ``nva`` (nghttp2 copies it), with a DATA source if body bytes
        are queued or may follow."""
        cdef H2Connection conn = self.conn
        cdef nghttp2_data_provider2 provider
        cdef int rc
        if body is not None and PyBytes_GET_SIZE(body):
            self.out.append(body)
            self.out_size += PyBytes_GET_SIZE(body)
        self.out_eof = not more
        self.submitted = True
        if self.out_size or more:
            provider.source.ptr = <void *>self
            provider.read_callback = h2_read_body
            rc = nghttp2_submit_response2(conn.session, self.stream_id, nva, nvlen, &provider)
        else:
            rc = nghttp2_submit_response2(conn.session, self.stream_id, nva, nvlen, NULL)
        if rc != 0:
            self.reset(NGHTTP2_INTERNAL_ERROR)
            return
        conn.flush_soon()

    # -- what the Exchange calls on its client --

    cdef void write_head(self, bytes head):
        if self.state != C_CLOSED and not self.submitted:
            self.submit_head(head, None, False)

    cdef void hold_head(self, bytes head):
        self.held_head = head
        self.held_is_fields = False

    cdef void write_body(self, bytes data):
        cdef bytes head = self.held_head
        if self.state == C_CLOSED:
            return
        if head is not None:
            self.held_head = None
            self.submit_held(head, data, True)
        else:
            self.out.append(data)
            self.out_size += PyBytes_GET_SIZE(data)
            if self.deferred:
                self.deferred = False
                nghttp2_session_resume_data(self.conn.session, self.stream_id)
            self.conn.flush_soon()
        if self.out_size > H2_STREAM_BUFFER_HIGH and self.ex is not None and \
                self.ex.upstream is not None and not self.upstream_held:
            # the client's stream window is not draining as fast: the upstream waits
            self.upstream_held = True
            self.ex.upstream.pause_reading_for_client()

    cdef void flush_head(self):
        pass  # the held head goes out with the body, or at on_exchange_done as a whole response

    cdef void on_exchange_done(self, Exchange ex):
        cdef bytes head = self.held_head
        if self.ex is not ex:
            return
        self.ex = None
        self.release_upstream()
        if self.state == C_CLOSED:
            return
        if head is not None:
            self.held_head = None
            self.submit_held(head, None, False)
            return
        self.out_eof = True
        if self.deferred:
            self.deferred = False
            nghttp2_session_resume_data(self.conn.session, self.stream_id)
        self.conn.flush_soon()

    cdef void update_reading(self):
        """Request body waits for the upstream: its bytes stay unacknowledged (the client's
        stream window closes) until the upstream's transport drains."""
        cdef size_t n = self.unconsumed
        if self.state == C_CLOSED or self.reading_paused_upstream or self.reading_paused_backlog:
            return
        if n:
            self.unconsumed = 0
            nghttp2_session_consume_stream(self.conn.session, self.stream_id, n)
            self.conn.flush_soon()

    cdef void release_upstream(self):
        if self.upstream_held:
            self.upstream_held = False
            if self.ex is not None and self.ex.upstream is not None:
                self.ex.upstream.resume_reading_for_client()

    cdef void reset(self, uint32_t error_code):
        if self.state != C_CLOSED:
            nghttp2_submit_rst_stream(self.conn.session, NGHTTP2_FLAG_NONE, self.stream_id,
                                      error_code)
            self.conn.flush_soon()

    cdef void abort(self):
        self.reset(NGHTTP2_INTERNAL_ERROR)

    cdef void close(self):
        self.reset(NGHTTP2_NO_ERROR)

    cdef void linger(self):
        pass  # HTTP/2 ends a stream, not the connection

    cdef void become_tunnel(self):
        self.reset(NGHTTP2_CONNECT_ERROR)  # never asked: h2 requests carry no Upgrade


cdef inline void status_digits(int status, char *out) noexcept nogil:
    out[0] = <char>(48 + status // 100)
    out[1] = <char>(48 + (status // 10) % 10)
    out[2] = <char>(48 + status % 10)


cdef inline uint8_t ascii_lower(uint8_t c) noexcept nogil:
    return c + 32 if b'A' <= c <= b'Z' else c


cdef inline bint field_is_keep_alive(const uint8_t *name, size_t n) noexcept nogil:
    """Connection-specific fields the HTTP/1.1 parser does not flag (RFC 9113 8.2.2)."""
    return (n == 10 and memcmp(name, b"keep-alive", 10) == 0) or \
        (n == 16 and memcmp(name, b"proxy-connection", 16) == 0)


cdef gw_limits conn_limits
conn_limits.max_request_line = 1 << 20
conn_limits.max_head_size = 1 << 24
conn_limits.max_headers = GW_MAX_HEADERS


cdef nghttp2_ssize h2_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                                size_t length, uint32_t *data_flags,
                                nghttp2_data_source *source, void *user_data) noexcept:
    """nghttp2 frames DATA for a stream: copies what the Exchange wrote, up to what the
    client's windows allow (``length``)."""
    cdef H2Stream s = <H2Stream>source.ptr
    cdef size_t n
    if s.out is None:
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    n = h2_take_chunks(s.out, &s.out_first, buf, length)
    s.out_size -= n
    if s.upstream_held and s.out_size <= H2_STREAM_BUFFER_LOW:
        s.release_upstream()
    if s.out_size == 0:
        if s.out_eof:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
        elif n == 0:
            s.deferred = True
            return NGHTTP2_ERR_DEFERRED
    return <nghttp2_ssize>n
