# HTTP/2 client sessions to gRPC upstream nodes (scheme grpc / grpcs): one nghttp2 client
# session per connection, many streams on each, pooled per node.

cdef enum H2UpstreamState:
    H2U_CONNECTING = 0
    H2U_OPEN = 1
    H2U_CLOSED = 2

cdef class H2StreamOwner:
    """What a stream reports to (the gRPC call bridging it to a downstream stream). Each method
    is called at most in this order: response, data*, trailers, closed; or unsent alone. A
    stream that ends without trailers (a trailers-only response: response with end_stream)
    still reports closed."""
    cdef void on_h2_response(self, H2UpstreamStream s, int status, list headers, bint end_stream)
    cdef void on_h2_data(self, H2UpstreamStream s, bytes data)
    cdef void on_h2_trailers(self, H2UpstreamStream s, list trailers)
    cdef void on_h2_closed(self, H2UpstreamStream s, uint32_t error_code)
    cdef void on_h2_unsent(self, H2UpstreamStream s, str reason, bint timed_out)
    cdef void on_h2_request_drained(self, H2UpstreamStream s)

cdef class H2UpstreamStream:
    cdef H2UpstreamSession session
    cdef H2StreamOwner owner              # None once the stream has ended (or been cancelled)
    cdef readonly int32_t stream_id       # 0 until submitted
    cdef list request_headers             # [(name, value)] bytes; dropped once submitted
    cdef bytearray outgoing               # request body nghttp2 has not taken yet
    cdef bint out_ended                   # the request body is complete (END_STREAM due)
    cdef bint deferred                    # nghttp2 is waiting for resume_data
    cdef bint over_high_water             # the owner was told the body buffer is full
    cdef bint got_response
    cdef list collecting                  # header fields of the HEADERS block being received
    cdef readonly int status
    cdef readonly bint response_bytes     # some response frame arrived (not retryable)

    cdef bint send_data(self, bytes data, bint end)
    cdef void consumed(self, size_t n)
    cdef void cancel(self, uint32_t error_code)
    cdef void detach(self)

cdef class H2UpstreamSession:
    cdef H2UpstreamPool pool
    cdef readonly UpstreamNode node
    cdef object transport
    cdef nghttp2_session *session
    cdef readonly H2UpstreamState state
    cdef readonly bint retired            # no new streams (GOAWAY, keepalive.requests, drain)
    cdef dict streams                     # stream id -> H2UpstreamStream
    cdef list waiting                     # streams asked for before the session was open
    cdef readonly int opened              # streams ever started on this session
    cdef int max_opened                   # then it retires (keepalive.requests)
    cdef bint writing_paused
    cdef h2_buf sendbuf                   # scratch: the frames one write_out sends
    cdef bint in_callbacks                # inside mem_recv: flushing waits until it returns
    cdef bint flush_due
    cdef readonly double idle_deadline    # no stream since: closed then (0: busy)
    cdef double idle_timeout
    cdef double connect_deadline
    cdef object connector                 # the connect task
    cdef object loop

    cdef void set_state(self, H2UpstreamState new_state)
    cdef int capacity(self)
    cdef void start(self, H2UpstreamStream s)
    cdef void submit(self, H2UpstreamStream s)
    cdef void flush(self)
    cdef void write_out(self)
    cdef void stream_ended(self, H2UpstreamStream s)
    cdef void fail(self, str reason, bint timed_out)
    cdef void retire(self)
    cdef void close(self)
    cdef void on_timeout(self, double now)

cdef class H2UpstreamPool:
    cdef dict sessions_by_key             # node key -> list of live sessions to it
    cdef set sessions
    cdef bint draining

    cdef H2UpstreamStream open_stream(self, object loop, UpstreamNode node, UpstreamGroup group,
                                      H2StreamOwner owner, list headers)
    cdef void forget(self, H2UpstreamSession s)
    cdef void sweep(self, double now)
    cdef void drain(self)
    cdef void close_all(self)
