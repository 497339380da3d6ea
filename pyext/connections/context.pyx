cdef class RequestContext:
    """What plugins see of one request (the variables, the upstream request they shape)
    and the upstream request head it implies. The Exchange below it runs the phases and
    proxies; this layer only reads the parsed request and records plugins' choices."""


    # -- plugin-facing accessors (built lazily; nothing here runs without a plugin) --
    @property
    def state(self):
        """Per-request plugin state: a dict the plugins of this request share (request
        variables are not here: they are read through gateway.requestvars)."""
        return self.state_dict()

    cdef dict state_dict(self):
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def vars(self):
        """Deprecated name of ``state``, kept for plugins written against it."""
        return self.state

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
    def upstream_addr(self):
        """The node of the request's (last) try as "host:port"; None before one was chosen."""
        cdef UpstreamNode node = self.node
        if node is None:
            return None
        return node_address(node)

    @property
    def previous_tries(self):
        """The tries before the last one, as (address, status, seconds) tuples, oldest first;
        None when the request was not retried."""
        return tuple(self.try_log.tries) if self.try_log is not None else None

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
        self.attach(consumer)

    cdef void attach(self, object consumer) except *:
        cdef dict hooks
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
        self.add_response_header_bytes(
            name.encode("latin-1") if isinstance(name, str) else name,
            value.encode("latin-1") if isinstance(value, str) else value)

    cdef void add_response_header_bytes(self, bytes name, bytes value) except *:
        if self.extra_response_headers is None:
            self.extra_response_headers = []
        self.extra_response_headers.append((name, value))

    def set_default_response_header(self, name, value):
        """The response carries ``name: value`` unless it has a header of that name already
        (the upstream's, or one a plugin added): a plugin that only fills a gap needs no
        header_filter hook (which costs every response a Python list of its headers)."""
        n = name.encode("latin-1") if isinstance(name, str) else name
        self.set_default_response_header_bytes(
            n, n.lower(), value.encode("latin-1") if isinstance(value, str) else value)

    cdef void set_default_response_header_bytes(self, bytes name, bytes lower_name,
                                                bytes value) except *:
        if self.default_response_headers is None:
            self.default_response_headers = []
        self.default_response_headers.append((name, lower_name, value))

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
    def scheme(self):
        """"http", or "https" on a TLS connection."""
        return "https" if self.client.tls is not None else "http"

    @property
    def tls(self):
        """The connection's TlsSession (server name, client certificate, ...), None on HTTP."""
        return self.client.tls

    @property
    def server_addr(self):
        """The local address that accepted the connection (nginx $server_addr)."""
        sockname = self.client.transport.get_extra_info("sockname") \
            if self.client.transport is not None else None
        return str(sockname[0]) if isinstance(sockname, tuple) else None

    @property
    def server_port(self):
        """The local port that accepted the connection (nginx $server_port)."""
        sockname = self.client.transport.get_extra_info("sockname") \
            if self.client.transport is not None else None
        return sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None

    @property
    def http_version(self):
        return "1.1" if self.version_minor == 1 else "2.0" if self.version_minor == 2 else "1.0"

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
        """One request header's value (repeated lines joined with ", "), found in the parsed
        head without building the whole mapping."""
        cdef object value
        if self._headers is not None:
            return self._headers.get(name.lower(), default)
        try:
            value = self.header_value(name.lower().encode("latin-1"))
        except UnicodeEncodeError:
            return default  # no header line can have that name
        return default if value is None else value

    cdef object header_value(self, bytes lower_name):
        """The value of the header ``lower_name`` (lowercase) as str, repeated lines joined
        with ", " as the ``headers`` mapping joins them; None when absent."""
        cdef gw_request_head *h = self.head
        cdef const char *d = PyBytes_AS_STRING(self.data)
        cdef const char *want = PyBytes_AS_STRING(lower_name)
        cdef size_t want_len = <size_t>PyBytes_GET_SIZE(lower_name)
        cdef uint32_t i
        cdef gw_header *e
        cdef object value = None
        for i in range(h.n_headers):
            e = &h.headers[i]
            if field_name_is(d, e.name, want, want_len):
                line = PyUnicode_DecodeLatin1(d + e.value.off, e.value.len, NULL)
                value = line if value is None else value + ", " + line
        return value

    def set_upstream_header(self, name, value):
        """``name: value`` is sent upstream instead of the client's lines of that name and those
        plugins added before."""
        n = name.encode("latin-1") if isinstance(name, str) else name
        v = value.encode("latin-1") if isinstance(value, str) else value
        self.set_upstream_header_bytes(n, n.lower(), v)

    def add_upstream_header(self, name, value):
        """``name: value`` is sent upstream in addition to the lines of that name already there."""
        if self.upstream_header_set is None:
            self.upstream_header_set = []
        self.upstream_header_set.append(
            (name.encode("latin-1") if isinstance(name, str) else name,
             value.encode("latin-1") if isinstance(value, str) else value))

    def remove_upstream_header(self, name):
        """No line of ``name`` is sent upstream: neither the client's nor one a plugin added."""
        self.remove_upstream_header_bytes(
            (name.encode("latin-1") if isinstance(name, str) else name).lower())

    cdef void set_upstream_header_bytes(self, bytes name, bytes lower_name, bytes value) except *:
        self.remove_upstream_header_bytes(lower_name)
        if self.upstream_header_set is None:
            self.upstream_header_set = []
        self.upstream_header_set.append((name, value))

    cdef void remove_upstream_header_bytes(self, bytes lower_name) except *:
        if self.upstream_header_remove is None:
            self.upstream_header_remove = set()
        self.upstream_header_remove.add(lower_name)
        self.removed_name_lengths |= name_length_bit(PyBytes_GET_SIZE(lower_name))
        if self.upstream_header_set:
            self.upstream_header_set[:] = [
                (n, v) for n, v in self.upstream_header_set if n.lower() != lower_name]

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

    # -- the upstream request head this context implies --

    cdef uint64_t balance_hash(self, object key_of) except? 0:
        """The ring position of this request's balancing key (chash): ``key_of(self)`` runs
        once per request, a retry on the same ring reuses it."""
        if key_of is not self.hashed_by:
            self.key_hash = hash_text(key_of(self)) if key_of is not None else 0
            self.hashed_by = key_of
        return self.key_hash

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
        cdef bint mf = self.upstream_method is None and (
            h.method_id == GW_METHOD_OPTIONS or h.method_id == GW_METHOD_TRACE)
        cdef int n_xff = 0, k
        cdef bint custom = self.upstream_header_remove is not None
        cdef ClientConnection client = self.client
        cdef UpstreamGroup group = self.group
        hb.start()
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
            if custom and (self.removed_name_lengths & name_length_bit(e.name.len)) and \
                    self.data[e.name.off:e.name.off + e.name.len].lower() in self.upstream_header_remove:
                continue
            if mf and max_forwards(d, e) > 0:
                # RFC 9110 section 7.6.2: an intermediary MUST decrement it on OPTIONS and TRACE
                hb.add_bytes(b"Max-Forwards: %d\r\n" % (max_forwards(d, e) - 1))
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
        if client.tls is None:
            hb.add("X-Forwarded-Proto: http\r\n", 25)
        else:
            hb.add("X-Forwarded-Proto: https\r\n", 26)
        if h.has_host:
            hb.add_header_span("X-Forwarded-Host", 16, d, dlen, h.host)
        # RFC 9110 section 7.6.3: an HTTP-to-HTTP gateway MUST send Via in each inbound request,
        # naming the protocol it received; a Via the client sent stays before it (one list)
        if h.version_minor == 0:
            hb.add("Via: 1.0 gateway\r\n", 18)
        elif h.version_minor == 2:
            hb.add("Via: 2 gateway\r\n", 16)
        else:
            hb.add("Via: 1.1 gateway\r\n", 18)
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


cdef inline uint64_t name_length_bit(size_t length):
    """A header name length's bit in a 64-bit set (longer names share the top bit): most
    request headers are ruled out of a removal set without slicing their names."""
    return (<uint64_t>1) << (length if length < 63 else 63)

