cdef class Exchange:
    cdef ClientConnection client
    cdef public Runtime runtime
    cdef public RouteEntry route
    cdef bytes data                      # buffer the request head's spans point into
    cdef gw_request_head *head
    cdef public int method_id
    cdef public bint is_head
    cdef public bint keep_alive
    cdef int version_minor
    cdef int body_kind                   # request body framing
    cdef uint64_t body_remaining
    cdef bint body_done
    cdef uint64_t body_bytes
    cdef list body_backlog                 # request body received before the upstream is ready
    cdef size_t backlog_size
    cdef UpstreamConnection upstream
    cdef public UpstreamNode node
    cdef UpstreamGroup group
    cdef int attempts
    cdef set failed_nodes
    cdef bint retried_stale
    cdef public bint response_started
    cdef bint response_done
    cdef bint chunked_to_client          # upstream chunks are decoded before the client sees them
    cdef bint filtering                  # body_filter hooks see (and may change) the payload
    cdef public bint upgrading           # a WebSocket upgrade is asked of the upstream
    cdef public int status
    cdef public bint timed
    cdef public double start_time
    cdef public double upstream_start
    cdef public double upstream_latency
    cdef public uint64_t bytes_sent
    cdef double read_timeout
    cdef bint expect_continue
    cdef object raw_params               # [(name, value)] from the router
    cdef dict _params
    cdef bytes normalized_path
    cdef dict _vars                      # per-request state shared between plugins
    cdef public object consumer
    cdef bint consumer_attached          # the access chain must take in the consumer's plugins
    cdef tuple consumer_before_proxy
    cdef tuple consumer_header_filter
    cdef tuple consumer_log
    cdef UpstreamGroup upstream_override # set by a plugin (traffic-split) before proxying
    cdef bytes upstream_host_override
    cdef bytes upstream_method            # set by a plugin (proxy-rewrite) to change the method
    cdef public list extra_response_headers  # (name, value) bytes added to whatever answers
    cdef public uint64_t body_limit      # per-request cap on the request body (0: the runtime's)
    cdef object _headers
    cdef dict _args
    cdef dict _cookies
    cdef public list upstream_header_set   # (name, value) set by plugins before proxying
    cdef public set upstream_header_remove
    cdef public bytes upstream_path        # set by plugins to rewrite the path (+query)
    cdef public object response_headers    # header_filter view: list of [name, value]
    cdef object task
    cdef void start(self)
    cdef void run_request_phases(self, tuple hooks)
    cdef void respond_plugin(self, object result)
    cdef void proceed_upstream(self)
    cdef void connect_to_upstream(self)
    cdef void retry_or_fail(self, int status, str message)
    cdef void send_request(self, UpstreamConnection u)
    cdef bytes build_upstream_head(self)
    cdef int add_transfer_encoding(self, HeadBuffer hb, const char *d, size_t dlen) except -1
    cdef void on_request_body(self, bytes data)
    cdef void on_upgraded(self, UpstreamConnection u, bytes buf, int32_t n)
    cdef void end_tunnel(self)
    cdef void relay_informational(self, bytes buf, int32_t n)
    cdef void on_response_head(self, UpstreamConnection u, bytes buf, int32_t n,
                               size_t inline_body)
    cdef void run_header_filter(self, UpstreamConnection u, bytes buf, int32_t n, bint close,
                                size_t inline_body, uint32_t drop)
    cdef void send_response_body(self, bytes data)
    cdef bytes filter_body(self, bytes chunk, bint last)
    cdef void end_filtered_body(self)
    cdef void on_response_complete(self, UpstreamConnection u, bint upstream_keep_alive)
    cdef void on_upstream_lost(self, UpstreamConnection u, bint got_bytes, object exc)
    cdef void on_upstream_failed(self, int status, str message)
    cdef void abort_client(self)
    cdef void respond_error(self, int status, str message)
    cdef void respond_local(self, int status, bytes body, object headers, int mode)
    cdef list filter_local_headers(self, object headers)
    cdef void log_abandoned(self)
    cdef void run_header_filter_hooks(self)
    cdef void run_log_phase(self)
    cdef void run_log_hooks(self, tuple hooks)
    cdef void finish(self)
