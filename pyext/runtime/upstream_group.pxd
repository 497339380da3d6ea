cdef class UpstreamNode:
    cdef public str host
    cdef public int port
    cdef public int weight
    cdef public bytes host_header        # "host:port" as the Host header for pass_host=node
    cdef public tuple key                # pool key
    cdef int current_weight              # smooth weighted round robin state
    cdef public int active               # requests in flight (least_conn)
    cdef list idle                       # this worker's pooled connections to the node

    cdef void share_idle(self, dict idle_by_key)

cdef class UpstreamGroup:
    cdef public str id
    cdef public list nodes
    cdef public str type
    cdef public int retries
    cdef public double connect_timeout
    cdef public double send_timeout
    cdef public double read_timeout
    cdef public int keepalive_size
    cdef public double keepalive_idle
    cdef public int keepalive_requests
    cdef public int pass_host
    cdef public bytes upstream_host
    cdef int total_weight
    cpdef UpstreamNode pick(self, object exclude=*)
