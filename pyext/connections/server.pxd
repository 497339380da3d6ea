cdef class Server:
    cdef public object loop
    cdef public Runtime runtime
    cdef set clients
    cdef dict pools                       # node key -> list of idle UpstreamConnection
    cdef set upstreams                    # every live upstream connection
    cdef HeadBuffer scratch
    cdef gw_params *match_params           # router scratch, reused by every request
    cdef public bint draining
    cdef object sweeper
    cdef public double sweep_interval
    cdef public object on_log             # optional callable(ctx) for the access log
    cdef public unsigned long long requests_total
    cdef public unsigned long long connections_total
    cdef public double clock              # monotonic time of the last sweep: deadlines use it
    cdef public str scheme
    cdef void adopt_pools(self, Runtime runtime)
    cdef UpstreamConnection pool_get(self, UpstreamNode node)
    cdef void pool_put(self, UpstreamConnection u, UpstreamGroup group)
    cdef void pool_forget(self, UpstreamConnection u)
