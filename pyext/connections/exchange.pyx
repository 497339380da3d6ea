cdef class Exchange(PhaseRunner):
    """One proxied request: acts on what the phases decided (proxy, answer, abort) and moves
    the request and response between the client and upstream connections."""

    # -- request side --

    cdef void init_request(self, ClientConnection client, Runtime runtime, bytes data,
                           gw_request_head *h):
        """A request head arrived on ``client``: ``data`` holds the bytes ``h``'s spans point
        into."""
        self.client = client
        self.runtime = runtime
        self.data = data
        self.head = h
        self.method_id = h.method_id
        self.is_head = h.method_id == GW_METHOD_HEAD
        self.keep_alive = h.keep_alive
        self.version_minor = h.version_minor
        self.body_kind = h.body_kind
        self.body_remaining = h.content_length
        self.body_done = h.body_kind == GW_BODY_NONE or (
            h.body_kind == GW_BODY_LENGTH and h.content_length == 0)
        # Precise clock reads only when something will report latencies (log hooks, access log).
        self.timed = runtime.timed or client.server.on_log is not None
        self.start_time = now_monotonic() if self.timed else client.server.clock

    cdef void set_route(self, RouteEntry route, list params, bytes normalized_path):
        """The router matched ``route``; a 100-continue is owed only to a routed request."""
        self.route = route
        self.upgrading = self.head.upgrade and route.websocket
        self.raw_params = params
        self.normalized_path = normalized_path
        self.expect_continue = self.head.expect_continue and self.version_minor == 1 and \
            not self.body_done

    cdef size_t count_length_body(self, size_t size):
        """``size`` more bytes arrived for a Content-Length body: how many of them are the
        body's (the rest is the next pipelined request)."""
        cdef size_t taken = size if size <= self.body_remaining else <size_t>self.body_remaining
        self.body_remaining -= taken
        if self.body_remaining == 0:
            self.body_done = True
        return taken

    cdef void count_chunked_body_end(self):
        self.body_done = True

    cdef void end_keep_alive(self):
        """The client's connection closes after this response (half-closed client, a broken
        request body)."""
        self.keep_alive = False

    cdef void on_client_lost(self):
        """The client's connection is gone: stop whatever is pending, and log the request
        (499 when nothing was answered)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if not self.response_done:
            self.log_abandoned()

    cdef void start(self):
        if self.route.has_plugins:
            self.after_request_phases(self.run_request_phases(self.route.request_hooks))
        else:
            self.proceed_upstream()

    cdef void after_request_phases(self, PhaseOutcome outcome):
        if outcome == PHASES_PASSED:
            self.proceed_upstream()
        elif outcome == PHASES_ANSWERED:
            self.respond_plugin(self.take_answer())
        elif outcome == PHASES_FAILED:
            self.respond_error(500, "plugin error")
        else:
            self.task = asyncio.ensure_future(self.continue_after(self.take_pending()))

    async def continue_after(self, pending):
        """The request phases went asynchronous (a hook returned a coroutine): the exchange
        goes on once they are done, if its client is still there for it."""
        cdef PhaseOutcome outcome = await pending
        if self.client.state == C_CLOSED or self.client.ex is not self:
            return
        self.after_request_phases(outcome)

    cdef void respond_plugin(self, Response answer):
        if answer is None:
            self.respond_error(500, "plugin error")
        elif answer.grpc_status >= 0 and is_grpc_request(self):
            self.respond_local(200, b"", grpc_answer_fields(
                answer.status, answer.body, answer.headers, answer.grpc_status)[1:], KEEP)
        else:
            self.respond_local(answer.status, answer.body, answer.headers, KEEP)

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
        if group.grpc:
            if not proceed_grpc(self, group):
                self.respond_error(426, "this route proxies gRPC, which needs HTTP/2")
            return
        self.connect_to_upstream()

    cdef void connect_to_upstream(self):
        cdef UpstreamGroup group = self.group
        cdef UpstreamNode node = group.pick(
            self, self.try_log.failed_nodes if self.try_log is not None else None)
        cdef UpstreamConnection u
        if node is None:
            self.respond_error(502, "no upstream node available")
            return
        self.take_node(node)
        self.attempts += 1
        if self.timed or group.observes or group.retry_timeout > 0.0:
            # the try's time includes its connect, as nginx's $upstream_response_time does;
            # retry_timeout counts from the first try's start
            self.upstream_start = now_monotonic()
        if self.expect_continue:
            self.expect_continue = False
            self.client.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        u = self.client.server.pool.get(node)
        if u is not None:
            self.send_request(u)
        else:
            self.task = asyncio.ensure_future(self.open_connection(node))

    cdef void take_node(self, UpstreamNode node):
        """The request goes to ``node`` (a retry: instead of the one before): it counts as in
        flight there until ``release_node``."""
        self.release_node()
        self.node = node
        node.acquire()
        self.held_node = node  # its own field: `node` is writable by plugins

    cdef void release_node(self):
        """The request is done with its node, however it ended (answered, failed, retried
        elsewhere, abandoned by the client): called from each of those paths, counted once."""
        cdef UpstreamNode node = self.held_node
        if node is not None:
            self.held_node = None
            node.release()

    async def open_connection(self, UpstreamNode node):
        cdef Server server = self.client.server
        cdef UpstreamConnection u = UpstreamConnection(server, node)
        cdef int status = 502
        cdef double started = now_monotonic()
        cdef bint tls_failed = False
        try:
            await asyncio.wait_for(
                server.loop.create_connection(lambda: u, node.host, node.port, ssl=node.ssl,
                                              server_hostname=node.server_hostname),
                self.group.connect_timeout)
        except asyncio.TimeoutError:
            status = 504
            u.close()
        except (OSError, asyncio.CancelledError) as exc:
            u.close()
            if isinstance(exc, asyncio.CancelledError):
                return
            if node.ssl is not None and log_tls_connect_failure(self.group.id, node, exc):
                tls_failed = True
        else:
            if self.response_done or self.client.state == C_CLOSED or self.client.ex is not self:
                # Answered while the connection opened (a refused body, a body timeout) or
                # abandoned: nothing of the request goes out, and no second answer; the fresh
                # connection is pooled for the next request.
                server.pool.put(u, self.group)
                return
            if u.is_open():
                self.send_request(u)
                return
            # connected, then reset before this task resumed (a node dying under load): nothing
            # was sent, so it fails like a refused connect (writing would raise)
        if self.group.passive is not None: self.group.passive.on_failure(node, status)
        if not tls_failed:
            log.warning("cannot connect to upstream %s:%d (%s after %.3f s)", node.host, node.port,
                        "timed out" if status == 504 else
                        "refused or unreachable" if u.transport is None else "reset at once",
                        now_monotonic() - started)
        self.retry_or_fail(status, "upstream connect " + ("timed out" if status == 504 else "failed"))

    cdef void retry_or_fail(self, int status, str message):
        """The connect failed: nothing of the request reached the node."""
        if self.response_done or self.client.state == C_CLOSED:
            return  # answered or abandoned meanwhile: no other node, no second answer
        if self.retry_allowed(False):
            self.retry_elsewhere(status)
            return
        self.end_try(status)
        self.respond_error(status, message)

    # -- retries (README "Retries"; the failure paths below call these) --

    cdef bint retry_allowed(self, bint request_sent):
        """The one retry decision: may the request go to another node now that its try on
        this one failed (``request_sent``: after the request, or part of it, went out)?
        Nothing may have reached the client, tries (``retries``) and time (``retry_timeout``)
        must be left, and a request an upstream may have seen goes again only if that is safe:
        no body byte went out (bodies are streamed, not kept, so one cannot be sent twice) and
        the method is idempotent, or the upstream got an incomplete request (a body was due
        and none of it came)."""
        cdef UpstreamGroup group = self.group
        if self.response_started or self.client.state == C_CLOSED:
            return False
        if self.attempts > group.retries or not group.nodes:
            return False
        if group.retry_timeout > 0.0 and now_monotonic() >= group.retry_timeout + (
                self.try_log.first_start if self.try_log is not None else self.upstream_start):
            return False
        if not request_sent:
            return True
        if self.body_sent_upstream:
            return False
        if self.upstream_method is not None:
            if upstream_method_idempotent(self.upstream_method):
                return True
        elif idempotent(self.method_id):
            return True
        return self.body_kind != GW_BODY_NONE and not (
            self.body_kind == GW_BODY_LENGTH and self.body_done and self.body_bytes == 0)

    cdef void retry_elsewhere(self, int status):
        """Ends the current try (``status``: its outcome, for the log) and starts the next one,
        on a node this request has not failed on while one is left (then on any again)."""
        cdef UpstreamNode node = self.held_node
        self.end_try(status)
        if self.try_log is None:
            self.try_log = TryLog(self.upstream_start)
        self.try_log.add(node, self.upstream_status, self.upstream_latency, len(self.group.nodes))
        self.upstream_status = 0
        self.upstream_latency = 0.0
        self.connect_to_upstream()

    cdef bint retry_on_status(self, UpstreamConnection u, int status):
        """The upstream answered ``status`` (its head only has arrived): a status listed in
        ``retry_on_statuses`` goes to another node when ``retry_allowed``. The response is
        discarded unread and its connection closed: draining a failing node's body would
        only delay the next try. True when the request moved on."""
        if status not in self.group.retry_statuses or not self.retry_allowed(True):
            return False
        log.warning("upstream %s:%d answered %d: trying another node", u.node.host, u.node.port,
                    status)
        if u is self.upstream:
            self.upstream = None
        u.close()
        self.retry_elsewhere(status)
        return True

    cdef void end_try(self, int status):
        """The current try ended without a response to relay: ``status`` is its outcome for
        the log (the upstream's, or 502/504 as nginx records an upstream that gave none), and
        its time ran until now."""
        self.upstream_status = status
        if self.timed:
            self.upstream_latency = now_monotonic() - self.upstream_start

    cdef void send_request(self, UpstreamConnection u):
        cdef list parts
        self.upstream = u
        if self.route.before_proxy or self.consumer_before_proxy is not None:
            if not (self.run_hooks(self.route.before_proxy, "before_proxy", False) and
                    self.run_hooks(self.consumer_before_proxy, "before_proxy", False)):
                self.client.server.pool.put(u, self.group)
                self.upstream = None
                self.respond_error(500, "plugin error")
                return
        parts = [self.build_upstream_head()]
        if self.body_backlog:
            self.body_sent_upstream = True
            parts.extend(self.body_backlog)
            self.body_backlog = None
            self.backlog_size = 0
        u.send(self, parts, self.body_done)
        self.client.hold_reading_for_backlog(False)

    cdef void on_request_body(self, bytes data):
        """Body bytes of this request from the client (already cut at the message end)."""
        self.body_bytes += PyBytes_GET_SIZE(data)
        if self.upstream is not None and self.upstream.state != U_CLOSED and self.upstream.ex is self:
            self.upstream.write(data)
            self.body_sent_upstream = True
            self.upstream.expect_response_within(
                self.read_timeout if self.body_done else self.group.send_timeout)
        elif not self.response_done:
            if self.body_backlog is None:
                self.body_backlog = []
            self.body_backlog.append(data)
            self.backlog_size += PyBytes_GET_SIZE(data)
            if self.backlog_size > CLIENT_BUFFER_HIGH:
                self.client.hold_reading_for_backlog(True)

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
        hb.start()
        hb.add_status_line(r.status, d, dlen, r.reason)
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & GW_HF_UPGRADE:
                hb.add_header_span("Upgrade", 7, d, dlen, e.value)
            elif not e.flags & GW_HF_HOP_BY_HOP:
                hb.add_parsed_header(d, dlen, e)
        hb.add("Connection: upgrade\r\n\r\n", 23)
        self.client.become_tunnel()
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

    cdef int relay_informational(self, UpstreamConnection u, bytes buf, int32_t n) except -1:
        """A 1xx head written anew like a final one, never the upstream's bytes: those may start
        with empty lines and carry hop-by-hop fields or a framing field no 1xx may have."""
        cdef gw_response_head *r = &u.head
        cdef const char *d = PyBytes_AS_STRING(buf)
        cdef uint32_t drop = GW_HF_HOP_BY_HOP | GW_HF_CONTENT_LENGTH | GW_HF_TRANSFER_ENCODING
        cdef HeadBuffer hb
        cdef uint32_t i
        if self.version_minor != 1 or self.client.transport.is_closing():
            return 0
        hb = self.client.server.scratch
        hb.start()
        hb.add_status_line(r.status, d, <size_t>n, r.reason)
        for i in range(r.n_headers):
            if not (r.headers[i].flags & drop):
                hb.add_parsed_header(d, <size_t>n, &r.headers[i])
        hb.add(b"\r\n", 2)
        self.client.transport.write(hb.take())
        return 0

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
        cdef bint has_date = False
        if self.group.retry_statuses is not None and self.retry_on_status(u, r.status):
            return
        self.response_started = True
        self.status = r.status
        self.upstream_status = r.status
        if self.group.passive is not None: self.group.passive.on_status(self.node, r.status)
        if self.timed or self.group.observes:
            self.upstream_latency = now_monotonic() - self.upstream_start
            if self.group.observes:
                self.group.observe(self.node, self.upstream_latency)
        # The client keeps its connection only if both sides allow it and the body is delimited.
        close = (not self.keep_alive) or self.client.server.draining or \
            (r.body_kind == GW_BODY_UNTIL_CLOSE) or (not self.body_done)
        # body_filter hooks may change the length: the gateway frames the body itself then
        # (chunked to HTTP/1.1 clients, close-delimited to HTTP/1.0 ones).
        self.filtering = bool(self.route.body_filter) and r.body_kind != GW_BODY_NONE
        self.chunked_to_client = r.body_kind == GW_BODY_CHUNKED and (
            self.version_minor != 1 or self.filtering)  # HTTP/1.0 and HTTP/2 (2): unchunked
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
        if self.version_minor == 2 and self.extra_response_headers is None and \
                self.default_response_headers is None:
            # An HTTP/2 client's HEADERS are made from the parsed fields: no HTTP/1.1 head is
            # written only to be parsed again (framing fields are HTTP/2's own business).
            (<H2Stream>self.client).hold_fields(r, buf, n, inline_body, drop)
            return
        hb = self.client.server.scratch
        hb.start()
        hb.add_status_line(r.status, d, dlen, r.reason)
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & drop:
                continue
            if e.flags & GW_HF_DATE:
                has_date = True
            hb.add_parsed_header(d, dlen, e)
        if not has_date:
            hb.add_date()  # RFC 9110 section 6.6.1: a forwarded response without Date gets one
        if self.extra_response_headers is not None:
            for name, value in self.extra_response_headers:
                hb.add_header(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                              PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        if self.default_response_headers is not None:
            self.add_missing_defaults(hb, d, r, drop)
        hb.end_head(self.version_minor, self.frames_chunked(r), close)
        if inline_body:
            hb.add_span(d, <size_t>PyBytes_GET_SIZE(buf), span_of(n, inline_body))
        self.client.hold_head(hb.take())

    cdef bint frames_chunked(self, gw_response_head *r):
        """Whether the head gets the gateway's own ``Transfer-Encoding: chunked``: the body
        goes to an HTTP/1.1 client in chunks and the upstream's own list (codings, then
        chunked) is not relayed in its place."""
        if self.version_minor != 1:
            return False
        if r.body_kind == GW_BODY_CHUNKED:
            return not relays_transfer_coding(r)
        return self.filtering

    cdef int add_missing_defaults(self, HeadBuffer hb, const char *d, gw_response_head *r,
                                  uint32_t drop) except -1:
        """The default response headers the upstream's head (less what is dropped) and the
        added headers do not already have."""
        cdef uint32_t i
        cdef bytes lower
        cdef bint present
        for name, lower, value in self.default_response_headers:
            present = False
            for i in range(r.n_headers):
                if not (r.headers[i].flags & drop) and field_name_is(
                        d, r.headers[i].name, PyBytes_AS_STRING(lower),
                        <size_t>PyBytes_GET_SIZE(lower)):
                    present = True
                    break
            if not present and self.extra_response_headers is not None:
                present = any(n.lower() == lower for n, _ in self.extra_response_headers)
            if not present:
                hb.add_header(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                              PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        return 0

    cdef void add_missing_default_fields(self, list fields):
        """The same for a header list in the Python shape ([name, value] str pairs)."""
        cdef set names
        if self.default_response_headers is None:
            return
        names = {str(f[0]).lower() for f in fields}
        for name, lower, value in self.default_response_headers:
            if lower.decode("latin-1") not in names:
                fields.append([name.decode("latin-1"), value.decode("latin-1")])

    cdef void run_header_filter(self, UpstreamConnection u, bytes buf, int32_t n, bint close,
                                size_t inline_body, uint32_t drop):
        cdef gw_response_head *r = &u.head
        cdef const char *d = PyBytes_AS_STRING(buf)
        cdef size_t dlen = <size_t>n
        cdef HeadBuffer hb
        cdef uint32_t i
        cdef gw_header *e
        cdef list headers = []
        cdef bint has_date = False
        for i in range(r.n_headers):
            e = &r.headers[i]
            if e.flags & drop:
                continue
            headers.append([buf[e.name.off:e.name.off + e.name.len].decode("latin-1"),
                            buf[e.value.off:e.value.off + e.value.len].decode("latin-1")])
        if self.extra_response_headers is not None:
            for name, value in self.extra_response_headers:
                headers.append([name.decode("latin-1"), value.decode("latin-1")])
        self.add_missing_default_fields(headers)
        self.response_headers = headers
        self.run_header_filter_hooks()
        if self.status < 100 or self.status > 599:
            log.error("header_filter plugin on route %s set status %r; the upstream's %d is sent",
                      self.route.id, self.status, r.status)
            self.status = r.status
        hb = self.client.server.scratch
        hb.start()
        if self.status == r.status:
            hb.add_status_line(r.status, d, dlen, r.reason)
        else:
            hb.add_own_status_line(self.status)
        for name, value in self.response_headers:
            if not has_date and len(name) == 4 and field_bytes(name).lower() == b"date":
                has_date = True
            hb.add_field(name, value)
        if not has_date:
            hb.add_date()
        hb.end_head(self.version_minor, self.frames_chunked(r), close)
        if inline_body:
            hb.add_span(d, <size_t>PyBytes_GET_SIZE(buf), span_of(n, inline_body))
        self.client.hold_head(hb.take())

    cdef void send_response_body(self, bytes data):
        if self.filtering:
            data = self.filter_body(data, False)
            if data is None:
                self.abort_client()
                return
            if not data:
                return
            if self.version_minor == 1:
                data = b"%x\r\n%b\r\n" % (PyBytes_GET_SIZE(data), data)
        self.bytes_sent += PyBytes_GET_SIZE(data)
        self.client.write_body(data)

    cdef void end_filtered_body(self):
        cdef bytes tail = self.filter_body(b"", True)
        if tail is None:
            self.abort_client()
            return
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
            self.client.server.pool.put(u, self.group)
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
        if self.group.passive is not None: self.group.passive.on_failure(self.node, 502)
        log.warning("upstream %s:%d closed the connection before responding", self.node.host,
                    self.node.port)
        if not got_bytes and self.retry_allowed(True):
            self.retry_elsewhere(502)
            return
        self.end_try(502)
        self.respond_error(502, "upstream closed the connection")

    cdef void on_head_refused(self):
        """The upstream's response head could not be relayed: nothing of it reached the
        client, which gets a 502 instead."""
        self.response_started = False
        self.client.hold_head(None)
        self.on_upstream_failed(502, "invalid response from upstream")

    cdef void on_response_unrelayable(self, int upstream_status):
        """The upstream answered soundly (``upstream_status``) in a form this client may not be
        sent (a transfer coding to an HTTP/1.0 or HTTP/2 client): 502, and no failure for the
        node's passive checks, as the limit is the client's."""
        self.upstream = None
        if self.response_done:
            return
        self.end_try(upstream_status)
        self.respond_error(502, "upstream response has a transfer coding this client cannot "
                                "receive")

    cdef void on_upstream_failed(self, int status, str message):
        self.upstream = None
        if self.response_done:
            return
        if self.group.passive is not None: self.group.passive.on_failure(self.node, status)
        if self.response_started:
            self.abort_client()
            return
        if status == 504 and self.retry_allowed(True):
            self.retry_elsewhere(504)  # timed out before any response byte (nginx's `timeout`)
            return
        self.end_try(status)
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
        if status != 200 and is_grpc_request(self):
            # a gRPC client reads grpc-status, not an HTTP error (README "gRPC")
            headers = grpc_answer_fields(status, body, headers, -1)[1:]
            status, body = 200, b""
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self.status = status
        self.response_started = True
        self.response_done = True
        close = mode == CLOSE or not self.keep_alive or not self.body_done or \
            self.client.server.draining
        self.keep_alive = not close
        if self.extra_response_headers is not None or self.default_response_headers is not None \
                or (self.route is not None and (
                self.route.header_filter or self.consumer_header_filter is not None)):
            headers = self.filter_local_headers(headers)
            status = self.status
        out = encode_local_response(self.client.server.scratch, status, body or b"", headers,
                                    close, self.is_head)
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
        self.add_missing_default_fields(out)
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
        self.release_node()
        if not self.response_started:
            self.status = 499
        self.run_log_phase()

    cdef void end_grpc_call(self, UpstreamNode node, int upstream_status, int grpc_status):
        """The gRPC call this exchange started (grpc_h2.pyx) is over: logged as its response."""
        self.node = node
        self.status = 200
        self.upstream_status = upstream_status
        self.response_started = True
        self.response_done = True
        self.finish()

    cdef void finish(self):
        cdef ClientConnection client = self.client
        self.release_node()
        client.flush_head()
        self.run_log_phase()
        client.on_exchange_done(self)
