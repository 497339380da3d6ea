cdef class ClientConnection:
    cdef Server server
    cdef object transport
    cdef public bytes client_ip
    cdef public int client_port
    cdef gw_request_head head
    cdef bytearray pending
    cdef readonly ClientState state
    cdef Exchange ex
    cdef double deadline
    cdef gw_chunked *chunked
    cdef bint reading_paused
    cdef bint reading_paused_upstream      # the upstream cannot take more request body
    cdef bint reading_paused_backlog       # body waiting for an upstream connection
    cdef bint reading_paused_pipeline      # pipelined bytes waiting for the current response
    cdef bint writing_paused               # the client's write buffer is above its high water
    cdef double send_deadline              # writing paused and no progress by then: cut it
    cdef size_t send_buffered              # write buffer size when the deadline was set
    cdef bint processing
    cdef public int requests
    cdef bytes held_head                   # response head waiting for its first body bytes
    cdef object write                      # transport.write, bound once per connection
    cdef readonly bint on_tls_listener     # made by a tls_listen socket (the handshake is done)
    cdef readonly TlsSession tls           # None on a plain connection
    cdef str tls_refusal                   # mTLS not satisfied: every request gets 400 + this
    cdef void set_state(self, ClientState new_state)
    cdef void become_tunnel(self)
    cdef void hold_reading_for_backlog(self, bint hold)
    cdef void on_send_timeout(self, double now)
    cdef void pause_reading_for_upstream(self)
    cdef void resume_reading_for_upstream(self)
    cdef void update_reading(self)
    cdef void process(self, bytes data)
    cdef Exchange begin(self, bytes data, Runtime runtime)
    cdef bytes feed_body(self, bytes data)
    cdef void fail_request_body(self, int status, str message)
    cdef void write_head(self, bytes head)
    cdef void hold_head(self, bytes head)
    cdef void write_body(self, bytes data)
    cdef void flush_head(self)
    cdef void on_exchange_done(self, Exchange ex)
    cdef void reject(self, int status, str reason)
    cdef void linger(self)
    cdef void on_timeout(self, double now)
    cdef void abort(self)
    cdef void close(self)
    cdef void drain(self, double until)
