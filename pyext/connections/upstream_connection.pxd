cdef class UpstreamConnection:
    cdef Server server
    cdef object transport
    cdef public UpstreamNode node
    cdef Exchange ex
    cdef gw_response_head head
    cdef gw_chunked *chunked
    cdef bytearray pending
    cdef readonly UpstreamState state
    cdef int body_kind
    cdef uint64_t remaining
    cdef public int requests
    cdef double deadline
    cdef double sent_at                   # when the current request started going out
    cdef double idle_timeout
    cdef bint got_response_bytes
    cdef bint reading_paused
    cdef bint reused
    cdef object write                     # transport.write, bound once per connection
    cdef bint is_open(self)
    cdef void set_state(self, UpstreamState new_state)
    cdef void park(self, double idle_timeout)
    cdef void expect_response_within(self, double seconds)
    cdef void on_head_data(self, bytes data)
    cdef void refuse_head(self, Exchange ex, object exc)
    cdef void forward_body(self, bytes data)
    cdef void forward_dechunked(self, bytes data)
    cdef void on_timeout(self, double now)
    cdef void send(self, Exchange ex, list parts, bint body_done)
    cdef void close(self)
