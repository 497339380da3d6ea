# One Exchange is allocated per request: with the GC header its size must stay within pymalloc's
# 512-byte small-object limit, or every request pays a system malloc and free (~130 instructions,
# seen with callgrind). State only some requests need goes into an object made when needed (see
# TryLog); tests/test_retries.py checks the size.
cdef class Exchange(PhaseRunner):
    cdef public Runtime runtime
    cdef public int method_id
    cdef public bint is_head
    cdef public bint keep_alive
    cdef bint body_sent_upstream         # a request body byte went to an upstream: not resendable
    cdef uint64_t body_remaining
    cdef bint body_done
    cdef list body_backlog                 # request body received before the upstream is ready
    cdef size_t backlog_size
    cdef UpstreamConnection upstream
    cdef int attempts
    cdef UpstreamNode held_node          # the node counting this request in its `active`
    cdef bint retried_stale
    cdef public bint response_started
    cdef bint response_done
    cdef bint chunked_to_client          # upstream chunks are decoded before the client sees them
    cdef bint filtering                  # body_filter hooks see (and may change) the payload
    cdef public int status
    cdef public int upstream_status        # the upstream's answer (502/504: unreachable), 0: none
    cdef public bint timed
    cdef public double upstream_start
    cdef public double upstream_latency
    cdef public uint64_t bytes_sent
    cdef double read_timeout
    cdef bint expect_continue
    cdef object task

    cdef void init_request(self, ClientConnection client, Runtime runtime, bytes data,
                           gw_request_head *h)
    cdef void set_route(self, RouteEntry route, list params, bytes normalized_path)
    cdef size_t count_length_body(self, size_t size)
    cdef void count_chunked_body_end(self)
    cdef void end_keep_alive(self)
    cdef void on_client_lost(self)
    cdef void start(self)
    cdef void after_request_phases(self, PhaseOutcome outcome)
    cdef void respond_plugin(self, Response answer)
    cdef void proceed_upstream(self)
    cdef void connect_to_upstream(self)
    cdef void take_node(self, UpstreamNode node)
    cdef void release_node(self)
    cdef void retry_or_fail(self, int status, str message)
    cdef bint retry_allowed(self, bint request_sent)
    cdef void retry_elsewhere(self, int status)
    cdef bint retry_on_status(self, UpstreamConnection u, int status)
    cdef void end_try(self, int status)
    cdef void send_request(self, UpstreamConnection u)
    cdef void on_request_body(self, bytes data)
    cdef void on_upgraded(self, UpstreamConnection u, bytes buf, int32_t n)
    cdef void end_tunnel(self)
    cdef int relay_informational(self, UpstreamConnection u, bytes buf, int32_t n) except -1
    cdef void on_response_head(self, UpstreamConnection u, bytes buf, int32_t n,
                               size_t inline_body)
    cdef bint frames_chunked(self, gw_response_head *r)
    cdef int add_missing_defaults(self, HeadBuffer hb, const char *d, gw_response_head *r,
                                  uint32_t drop) except -1
    cdef void add_missing_default_fields(self, list fields)
    cdef void run_header_filter(self, UpstreamConnection u, bytes buf, int32_t n, bint close,
                                size_t inline_body, uint32_t drop)
    cdef void send_response_body(self, bytes data)
    cdef void end_filtered_body(self)
    cdef void on_response_complete(self, UpstreamConnection u, bint upstream_keep_alive)
    cdef void on_upstream_lost(self, UpstreamConnection u, bint got_bytes, object exc)
    cdef void on_head_refused(self)
    cdef void on_response_unrelayable(self, int upstream_status)
    cdef void on_upstream_failed(self, int status, str message)
    cdef void abort_client(self)
    cdef void respond_error(self, int status, str message)
    cdef void respond_local(self, int status, bytes body, object headers, int mode)
    cdef list filter_local_headers(self, object headers)
    cdef void log_abandoned(self)
    cdef void end_grpc_call(self, UpstreamNode node, int upstream_status, int grpc_status)
    cdef void finish(self)
