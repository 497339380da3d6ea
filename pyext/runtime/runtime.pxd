cdef class RouteEntry:
    cdef public int index
    cdef public str id
    cdef public UpstreamGroup upstream
    cdef public tuple rewrite
    cdef public tuple access
    cdef public tuple before_proxy
    cdef public tuple header_filter
    cdef public tuple body_filter
    cdef public tuple log
    cdef public tuple request_hooks      # rewrite then access, in order
    cdef public bint has_plugins
    cdef public bint websocket           # enable_websocket: Upgrade requests are tunnelled
    cdef public dict plugins

cdef class Runtime:
    cdef public int version
    cdef public object router
    cdef const void *router_handle        # the compiled router behind `router`, for gw_router_find
    cdef public list routes
    cdef gw_limits limits
    cdef public double header_timeout
    cdef public double body_timeout
    cdef public double keepalive_timeout
    cdef public double send_timeout
    cdef public uint64_t max_body
    cdef public uint32_t h2_max_concurrent_streams
    cdef public uint32_t h2_max_header_list_size
    cdef public bint timed                # some route has log hooks: measure latencies
