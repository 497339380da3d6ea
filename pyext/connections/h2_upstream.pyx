# HTTP/2 client side, for gRPC upstreams (README "gRPC"). nghttp2 is sans-IO: bytes from the
# socket go in through mem_recv2, frames come out of mem_send2, and what happened is reported
# through the C callbacks below (they run inside mem_recv2, in this thread, with the GIL).
#
# Flow control follows the slower side both ways. Response DATA is acknowledged to the node
# (nghttp2_session_consume, which sends WINDOW_UPDATE) only once the owner says the downstream
# took it, so a node cannot run ahead of a slow client by more than a stream window. Request
# DATA is pulled by nghttp2 from the stream's buffer when the node's window allows; the owner is
# told to stop reading its client while that buffer is above H2_OUT_HIGH_WATER.

# Per-stream receive window offered to nodes: enough for a fast link (a window per round trip),
# small enough that a stalled client holds little.
DEF H2_STREAM_WINDOW = 262144
DEF H2_CONNECTION_WINDOW = 8388608
DEF H2_OUT_HIGH_WATER = 262144
DEF H2_OUT_LOW_WATER = 65536
# Streams per connection before another connection to the node is opened (also bounded by the
# node's SETTINGS_MAX_CONCURRENT_STREAMS).
DEF H2_STREAMS_PER_CONNECTION = 100
# While an upstream session's frames are being read: the downstreams they made send something
# (flushed after them, once each).
cdef set downstream_batch = None

# A stream ended by the connection under it, not by an RST_STREAM (outside HTTP/2's codes).
DEF H2_CONNECTION_LOST = 0xFFFFFFFF


cdef class H2StreamOwner:
    cdef void on_h2_response(self, H2UpstreamStream s, int status, list headers, bint end_stream):
        pass

    cdef void on_h2_data(self, H2UpstreamStream s, bytes data):
        pass

    cdef void on_h2_trailers(self, H2UpstreamStream s, list trailers):
        pass

    cdef void on_h2_closed(self, H2UpstreamStream s, uint32_t error_code):
        pass

    cdef void on_h2_unsent(self, H2UpstreamStream s, str reason, bint timed_out):
        pass

    cdef void on_h2_request_drained(self, H2UpstreamStream s):
        pass


cdef class H2UpstreamStream:
    """One request/response exchange on an upstream session, from the owner's side: it sends
    request DATA (send_data), acknowledges response DATA (consumed), or cancels (RST_STREAM)."""

    def __init__(self, H2StreamOwner owner, list headers):
        self.owner = owner
        self.request_headers = headers
        self.outgoing = bytearray()
        self.stream_id = 0

    cdef bint send_data(self, bytes data, bint end):
        """Queues request body bytes (``end``: the last). False when the buffer is above its
        high water: the owner should stop reading its client until on_h2_request_drained."""
        cdef H2UpstreamSession session = self.session
        if data:
            self.outgoing += data
        if end:
            self.out_ended = True
        if self.deferred and self.stream_id > 0 and session is not None \
                and session.state != H2U_CLOSED:
            self.deferred = False
            nghttp2_session_resume_data(session.session, self.stream_id)
            session.flush()
        if len(self.outgoing) > H2_OUT_HIGH_WATER:
            self.over_high_water = True
            return False
        return True

    cdef void consumed(self, size_t n):
        """The downstream took ``n`` bytes of response DATA: the node may send that much more."""
        cdef H2UpstreamSession session = self.session
        if n and session is not None and session.state != H2U_CLOSED and self.stream_id > 0:
            nghttp2_session_consume(session.session, self.stream_id, n)
            session.flush()

    cdef void cancel(self, uint32_t error_code):
        """The owner gives the stream up (deadline, client gone): RST_STREAM to the node,
        nothing more reported to the owner."""
        cdef H2UpstreamSession session = self.session
        self.owner = None
        if session is None:
            return
        if self.stream_id == 0:
            if session.waiting is not None and self in session.waiting:
                session.waiting.remove(self)
            self.session = None
            session.stream_ended(self)
            return
        if session.state != H2U_CLOSED:
            nghttp2_submit_rst_stream(session.session, NGHTTP2_FLAG_NONE, self.stream_id, error_code)
            session.flush()

    cdef void detach(self):
        self.owner = None


# -- nghttp2 callbacks (user_data: the H2UpstreamSession) --

cdef H2UpstreamStream _stream_of(H2UpstreamSession session, int32_t stream_id):
    return <H2UpstreamStream>session.streams.get(stream_id)


cdef int _on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame,
                           void *user_data) noexcept:
    cdef H2UpstreamStream s = _stream_of(<H2UpstreamSession>user_data, frame.hd.stream_id)
    if s is not None:
        s.collecting = []
    return 0


cdef int _on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                    void *user_data) noexcept:
    cdef H2UpstreamStream s = _stream_of(<H2UpstreamSession>user_data, frame.hd.stream_id)
    if s is not None and s.collecting is not None:
        s.collecting.append((PyBytes_FromStringAndSize(<const char *>name, namelen),
                             PyBytes_FromStringAndSize(<const char *>value, valuelen)))
    return 0


cdef int _on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame,
                        void *user_data) noexcept:
    cdef H2UpstreamSession session = <H2UpstreamSession>user_data
    cdef H2UpstreamStream s
    cdef list fields
    cdef int status = 0
    if frame.hd.type == NGHTTP2_GOAWAY:
        # streams above last_stream_id are closed by nghttp2 as refused (retryable)
        session.retire()
        session.stream_ended(None)
        return 0
    if frame.hd.type != NGHTTP2_HEADERS:
        return 0
    s = _stream_of(session, frame.hd.stream_id)
    if s is None:
        return 0
    fields = s.collecting or []
    s.collecting = None
    s.response_bytes = True
    try:
        if not s.got_response:
            if fields and fields[0][0] == b":status":
                status = int(fields[0][1])
                del fields[0]
            if 100 <= status < 200:
                return 0  # informational: the real head follows
            s.got_response = True
            s.status = status
            if s.owner is not None:
                # END_STREAM here: a trailers-only response, the head carries the grpc-status
                s.owner.on_h2_response(s, status, fields,
                                       frame.hd.flags & NGHTTP2_FLAG_END_STREAM != 0)
        elif s.owner is not None:
            s.owner.on_h2_trailers(s, fields)
    except Exception:
        log.exception("gRPC upstream stream handling failed")
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    return 0


cdef int _on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id,
                        const uint8_t *data, size_t length, void *user_data) noexcept:
    cdef H2UpstreamSession session = <H2UpstreamSession>user_data
    cdef H2UpstreamStream s = _stream_of(session, stream_id)
    if s is None or s.owner is None:
        nghttp2_session_consume(ng, stream_id, length)  # nobody to wait for
        return 0
    s.response_bytes = True
    try:
        s.owner.on_h2_data(s, PyBytes_FromStringAndSize(<const char *>data, length))
    except Exception:
        log.exception("gRPC upstream stream handling failed")
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    return 0


cdef int _on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code,
                          void *user_data) noexcept:
    cdef H2UpstreamSession session = <H2UpstreamSession>user_data
    cdef H2UpstreamStream s = <H2UpstreamStream>session.streams.pop(stream_id, None)
    cdef H2StreamOwner owner
    if s is None:
        return 0
    owner = s.owner
    s.owner = None
    s.session = None
    session.stream_ended(s)
    if owner is None:
        return 0
    try:
        if error_code == NGHTTP2_REFUSED_STREAM and not s.response_bytes:
            # the node did not process it (RST REFUSED_STREAM or beyond a GOAWAY): safe to retry
            owner.on_h2_unsent(s, "upstream refused the stream", False)
        else:
            owner.on_h2_closed(s, error_code)
    except Exception:
        log.exception("gRPC upstream stream handling failed")
    return 0


cdef nghttp2_ssize _read_request_body(nghttp2_session *ng, int32_t stream_id, uint8_t *buf,
                                      size_t length, uint32_t *data_flags,
                                      nghttp2_data_source *source, void *user_data) noexcept:
    cdef H2UpstreamStream s = <H2UpstreamStream>source.ptr
    cdef size_t have = len(s.outgoing)
    cdef size_t n = have if have < length else length
    if n:
        memcpy(buf, <char *>s.outgoing, n)
        del s.outgoing[:n]
    if n == have:
        if s.out_ended:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
        elif n == 0:
            s.deferred = True
            return NGHTTP2_ERR_DEFERRED
    if s.over_high_water and have - n <= H2_OUT_LOW_WATER:
        s.over_high_water = False
        if s.owner is not None:
            try:
                s.owner.on_h2_request_drained(s)
            except Exception:
                log.exception("gRPC upstream stream handling failed")
    return <nghttp2_ssize>n


# Made once at import; every session to a node shares them.
cdef nghttp2_session_callbacks *h2_client_callbacks = h2_new_callbacks(
    _on_begin_headers, _on_header, _on_frame_recv, _on_data_chunk, _on_stream_close, NULL)
cdef nghttp2_option *h2_client_option = h2_new_option()
# until the node's SETTINGS arrive, assume what most servers allow
nghttp2_option_set_peer_max_concurrent_streams(h2_client_option, H2_STREAMS_PER_CONNECTION)


cdef class H2UpstreamSession:
    """One HTTP/2 connection to a gRPC node (cleartext with prior knowledge for grpc, TLS with
    ALPN h2 for grpcs), carrying many streams. The asyncio protocol of that connection."""

    def __init__(self, H2UpstreamPool pool, UpstreamNode node, UpstreamGroup group):
        self.pool = pool
        self.node = node
        self.streams = {}
        self.waiting = []
        self.max_opened = group.keepalive_requests if group.keepalive_requests > 0 else 1
        self.idle_timeout = group.keepalive_idle
        self.connect_deadline = now_monotonic() + group.connect_timeout
        self.set_state(H2U_CONNECTING)

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        h2_buf_free(&self.sendbuf)

    cdef void set_state(self, H2UpstreamState new_state):
        self.state = new_state

    cdef int capacity(self):
        """How many more streams this session takes now."""
        cdef uint32_t remote
        cdef int limit = H2_STREAMS_PER_CONNECTION
        if self.state == H2U_CONNECTING and not self.retired:
            return limit - len(self.waiting)
        if self.state != H2U_OPEN or self.retired:
            return 0
        remote = nghttp2_session_get_remote_settings(self.session,
                                                     NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
        if remote < <uint32_t>limit:
            limit = remote
        if self.max_opened - self.opened < limit - len(self.streams):
            return self.max_opened - self.opened
        return limit - len(self.streams)

    async def connect(self, object loop, double timeout):
        cdef UpstreamNode node = self.node
        self.loop = loop
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: self, node.host, node.port, ssl=node.ssl,
                                       server_hostname=node.server_hostname), timeout)
        except asyncio.TimeoutError:
            log.warning("cannot connect to gRPC upstream %s:%d (timed out after %.3f s)",
                        node.host, node.port, timeout)
            self.fail("upstream connect timed out", True)
        except asyncio.CancelledError:
            self.fail("upstream connect cancelled", False)
        except OSError as exc:
            if node.ssl is None or not log_tls_connect_failure("grpcs", node, exc):
                log.warning("cannot connect to gRPC upstream %s:%d (%s)", node.host, node.port,
                            exc.strerror or exc)
            self.fail("upstream connect failed", False)

    # asyncio protocol callbacks
    def connection_made(self, transport):
        cdef H2UpstreamStream s
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        set_tcp_nodelay(transport)
        if self.state != H2U_CONNECTING:
            transport.abort()  # given up on (cancelled) while connecting
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            log.warning("gRPC upstream %s:%d did not agree to HTTP/2 in the TLS handshake (ALPN)",
                        self.node.host, self.node.port)
            self.fail("upstream does not speak HTTP/2", False)
            return
        if nghttp2_session_client_new2(&self.session, h2_client_callbacks, <void *>self,
                                       h2_client_option) != 0:
            self.fail("out of memory", False)
            return
        # the node opens no streams to us (0)
        h2_submit_settings(self.session, 0, 0, H2_STREAM_WINDOW)
        nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0,
                                              H2_CONNECTION_WINDOW)
        self.set_state(H2U_OPEN)
        waiting = self.waiting
        self.waiting = None
        for s in waiting:
            if s.owner is not None:
                self.submit(s)
        self.write_out()
        if not self.streams:
            self.stream_ended(None)  # every call gave up while it connected

    def connection_lost(self, exc):
        if self.state == H2U_CLOSED:
            return
        self.fail("upstream closed the connection", False)

    def eof_received(self):
        return False

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        self.write_out()

    def data_received(self, bytes data):
        global downstream_batch
        cdef nghttp2_ssize rv
        cdef set batch
        cdef GrpcDownstream down
        if self.session == NULL or self.state == H2U_CLOSED:
            return
        self.in_callbacks = True
        # what these frames make the downstreams send goes out once per client connection
        # after them, not once per frame
        batch = downstream_batch = set()
        try:
            rv = nghttp2_session_mem_recv2(self.session, <const uint8_t *>PyBytes_AS_STRING(data),
                                           PyBytes_GET_SIZE(data))
        finally:
            self.in_callbacks = False
            downstream_batch = None
        for down in batch:
            down.flush_out()
        if rv < 0:
            log.warning("gRPC upstream %s:%d broke HTTP/2: %s", self.node.host, self.node.port,
                        h2_error_text(rv))
            self.fail("invalid HTTP/2 from upstream", False)
            return
        self.write_out()

    # -- streams --

    cdef void start(self, H2UpstreamStream s):
        s.session = self
        self.opened += 1
        self.idle_deadline = 0
        if self.state == H2U_CONNECTING:
            self.waiting.append(s)
        else:
            self.submit(s)
            self.flush()
        if self.opened >= self.max_opened:
            self.retire()  # keepalive.requests: this session takes no more

    cdef void submit(self, H2UpstreamStream s):
        cdef list headers = s.request_headers
        cdef nghttp2_nv *nva = h2_nv_array(headers)
        cdef nghttp2_data_provider2 provider
        cdef int32_t stream_id
        provider.source.ptr = <void *>s
        provider.read_callback = _read_request_body
        # nghttp2 copies the fields; the body is pulled from s.outgoing as windows allow
        stream_id = nghttp2_submit_request2(self.session, NULL, nva, len(headers), &provider,
                                            <void *>s)
        PyMem_Free(nva)
        s.request_headers = None
        if stream_id < 0:
            owner = s.owner
            s.owner = None
            s.session = None
            self.stream_ended(s)
            if owner is not None:
                (<H2StreamOwner>owner).on_h2_unsent(s, "upstream session cannot take a stream", False)
            return
        s.stream_id = stream_id
        self.streams[stream_id] = s

    cdef void flush(self):
        """What nghttp2 has to send goes out at the end of this event loop turn: the frames of
        every call a client connection's bytes started or fed, in one write."""
        if self.in_callbacks or self.flush_due or self.session == NULL or \
                self.state == H2U_CLOSED:
            return  # (inside mem_recv2, data_received writes once it returns)
        self.flush_due = True
        self.loop.call_soon(self.flush_now)

    def flush_now(self):
        self.flush_due = False
        self.write_out()

    cdef void write_out(self):
        """Writes what nghttp2 has to send (frames, request DATA the windows allow)."""
        cdef int rc
        if self.session == NULL or self.state == H2U_CLOSED:
            return
        rc = h2_send_due(self.session, self.transport, &self.sendbuf, &self.writing_paused)
        if rc < 0:
            log.warning("gRPC upstream %s:%d session failed: %s", self.node.host,
                        self.node.port, h2_error_text(rc))
            self.fail("upstream session failed", False)
        elif h2_session_done(self.session):
            self.close()  # GOAWAY sent (or both sides said it) and nothing is left

    cdef void stream_ended(self, H2UpstreamStream s):
        """A stream of this session is over: an empty session is idle from now on (a retiring
        one closes)."""
        if self.streams or (self.waiting and self.state == H2U_CONNECTING):
            return
        if self.retired and self.state == H2U_OPEN:
            if self.session != NULL:
                nghttp2_session_terminate_session(self.session, NGHTTP2_NO_ERROR)
            if not self.in_callbacks:
                self.write_out()  # the GOAWAY; then nghttp2 wants nothing more: closed
            # (inside mem_recv2: data_received writes it once it returns)
        elif self.state == H2U_OPEN:
            self.idle_deadline = now_monotonic() + self.idle_timeout
            if self.pool.draining:
                self.retire()
                self.stream_ended(s)

    cdef void fail(self, str reason, bint timed_out):
        """The connection is gone or unusable: every stream on it ends. Those the node never
        saw (still waiting for the connection) may be retried elsewhere."""
        cdef H2UpstreamStream s
        cdef list waiting = self.waiting or []
        cdef list streams = list(self.streams.values())
        self.waiting = None
        self.streams = {}
        self.close()
        for s in waiting:
            owner = s.owner
            s.owner = None
            s.session = None
            if owner is not None:
                (<H2StreamOwner>owner).on_h2_unsent(s, reason, timed_out)
        for s in streams:
            owner = s.owner
            s.owner = None
            s.session = None
            if owner is not None:
                # its HEADERS went out: the node may have acted on it, so it is not retried
                (<H2StreamOwner>owner).on_h2_closed(s, H2_CONNECTION_LOST)

    cdef void retire(self):
        """No new streams here; the session ends once its streams have."""
        if not self.retired:
            self.retired = True
            self.pool.forget(self)

    cdef void close(self):
        if self.state == H2U_CLOSED:
            return
        self.set_state(H2U_CLOSED)
        self.pool.forget(self)
        self.pool.sessions.discard(self)
        if self.connector is not None and not self.connector.done():
            self.connector.cancel()
        if self.transport is not None:
            self.transport.close()

    cdef void on_timeout(self, double now):
        if self.state == H2U_CONNECTING:
            if now >= self.connect_deadline:
                self.fail("upstream connect timed out", True)
        elif self.state == H2U_OPEN and self.idle_deadline and now >= self.idle_deadline \
                and not self.streams:
            self.retire()
            self.stream_ended(None)


cdef class H2UpstreamPool:
    """One worker's HTTP/2 sessions to gRPC nodes: a stream goes on a session to its node that
    has room (opened when there is none), so calls share few connections."""

    def __init__(self):
        self.sessions_by_key = {}
        self.sessions = set()
        self.draining = False

    cdef H2UpstreamStream open_stream(self, object loop, UpstreamNode node, UpstreamGroup group,
                                      H2StreamOwner owner, list headers):
        cdef list live = self.sessions_by_key.get(node.key)
        cdef H2UpstreamSession session = None, candidate
        cdef H2UpstreamStream s = H2UpstreamStream(owner, headers)
        if live:
            for candidate in live:
                if candidate.capacity() > 0:
                    session = candidate
                    break
        if session is None:
            session = H2UpstreamSession(self, node, group)
            session.loop = loop
            if live is None:
                live = self.sessions_by_key[node.key] = []
            live.append(session)
            self.sessions.add(session)
            session.connector = asyncio.ensure_future(
                session.connect(loop, group.connect_timeout))
        session.start(s)
        return s

    cdef void forget(self, H2UpstreamSession s):
        """``s`` takes no new streams: out of its node's list (it may still carry some)."""
        cdef list live = self.sessions_by_key.get(s.node.key)
        if live is not None:
            try:
                live.remove(s)
            except ValueError:
                pass
            if not live:
                del self.sessions_by_key[s.node.key]

    cdef void sweep(self, double now):
        cdef H2UpstreamSession s
        for s in list(self.sessions):
            s.on_timeout(now)

    cdef void drain(self):
        cdef H2UpstreamSession s
        self.draining = True
        for s in list(self.sessions):
            if not s.streams and s.state == H2U_OPEN:
                s.retire()
                s.stream_ended(None)

    cdef void close_all(self):
        cdef H2UpstreamSession s
        for s in list(self.sessions):
            s.fail("gateway shutting down", False)

    def session_counts(self):
        """Open sessions by node ("host:port") and how many streams they carry (tests,
        stats)."""
        cdef H2UpstreamSession s
        out = {}
        for s in self.sessions:
            label = f"{s.node.host}:{s.node.port}"
            sessions, streams = out.get(label, (0, 0))
            out[label] = (sessions + 1, streams + len(s.streams))
        return out

    def __len__(self):
        return len(self.sessions)
