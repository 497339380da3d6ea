cdef class Server:
    cdef public object loop
    cdef public Runtime runtime
    cdef set clients
    cdef UpstreamPool pool
    cdef readonly H2UpstreamPool h2_pool  # HTTP/2 sessions to gRPC nodes
    cdef HeadBuffer scratch
    cdef gw_params *match_params           # router scratch, reused by every request
    cdef readonly bint draining           # set by start_draining (which tells the pool too)
    cdef object sweeper
    cdef public double sweep_interval
    cdef public object on_log             # optional callable(ctx) for the access log
    cdef public unsigned long long requests_total
    cdef public unsigned long long connections_total
    cdef public double clock              # monotonic time of the last sweep: deadlines use it
    cdef public str scheme
    cdef public object acceptor           # with max_connections: told when a client goes
    cdef public object tls_misdirected    # (host, ssl_id) -> bool, None without mTLS
    cdef public object tls_engine         # gateway._native.TlsEngine of the tls_listen sockets

    cdef void add_client(self, ClientConnection c)
    cdef void drop_client(self, ClientConnection c)
    cdef void replace_client(self, ClientConnection old, ClientConnection new)
