cdef class Exchange(RequestContext):
    """One proxied request: runs the plugin phases and moves the request and response
    between the client and upstream connections."""

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
        self.upstream_status = status  # nginx records 502/504 for an upstream it cannot reach
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
        self.upstream_status = 101
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
        self.upstream_status = r.status
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
        self.upstream_status = 502
        self.respond_error(502, "upstream closed the connection")

    cdef void on_upstream_failed(self, int status, str message):
        self.upstream = None
        if self.response_done:
            return
        if self.response_started:
            self.abort_client()
            return
        self.upstream_status = status
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
