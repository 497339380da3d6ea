cdef class RouteEntry:

    def __init__(self, int index, str id, UpstreamGroup upstream=None, tuple rewrite=(),
                 tuple access=(), tuple before_proxy=(), tuple header_filter=(),
                 tuple body_filter=(), tuple log=(), dict plugins=None, bint websocket=False):
        self.index = index
        self.id = id
        self.upstream = upstream
        self.rewrite = rewrite
        self.access = access
        self.before_proxy = before_proxy
        self.header_filter = header_filter
        self.body_filter = body_filter
        self.log = log
        self.plugins = plugins or {}
        self.request_hooks = rewrite + access
        self.has_plugins = bool(self.request_hooks)
        self.websocket = websocket


cdef class Runtime:
    """One compiled configuration version; requests keep the one they started with."""

    def __init__(self, int version, object router, list routes, int max_request_line=8192,
                 int max_header_size=32768, int max_headers=100, double header_timeout=10.0,
                 double body_timeout=60.0, double keepalive_timeout=60.0,
                 double send_timeout=60.0, uint64_t max_body=0,
                 uint32_t h2_max_concurrent_streams=128, uint32_t h2_max_header_list_size=32768):
        self.version = version
        self.router = router
        self.router_handle = <const void *><size_t>router._handle
        self.routes = routes
        self.limits.max_request_line = max_request_line
        self.limits.max_head_size = max_header_size
        self.limits.max_headers = min(max_headers, GW_MAX_HEADERS)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.send_timeout = send_timeout
        self.max_body = max_body
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        self.h2_max_header_list_size = h2_max_header_list_size
        self.timed = any((<RouteEntry>r).log for r in routes)
