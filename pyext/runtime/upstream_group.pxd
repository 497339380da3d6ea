cdef class UpstreamNode:
    cdef public str host                 # the IP address connected to
    cdef readonly str name               # the host name it was resolved from (None: an IP node)
    cdef public int port
    cdef public int weight
    cdef readonly int priority           # higher first; lower ones only when those are unusable
    cdef public bytes host_header        # "host:port" as the Host header for pass_host=node
    cdef public tuple key                # pool key
    cdef readonly object ssl             # scheme https: its UpstreamSSLContext, else None
    cdef readonly str server_hostname    # scheme https: SNI and name checked, else None
    cdef readonly int active             # this worker's requests in flight to the node
    cdef list idle                       # this worker's pooled connections to the node
    cdef const uint64_t *health          # the shared state word (health checks), else NULL
    cdef const void *health_table        # the SharedHealth table it is in (passive reports)
    cdef int64_t health_slot
    cdef object health_owner             # keeps that table mapped while the node lives

    cdef void share_idle(self, dict idle_by_key)
    cdef void acquire(self)
    cdef void release(self)

cdef class UpstreamGroup:
    cdef public str id
    cdef public list nodes
    cdef public str type
    cdef public int retries
    cdef public double retry_timeout     # no new try this long after the first (0: no limit)
    cdef public frozenset retry_statuses # upstream statuses tried elsewhere (None: none)
    cdef public double connect_timeout
    cdef public double send_timeout
    cdef public double read_timeout
    cdef public int keepalive_size
    cdef public double keepalive_idle
    cdef public int keepalive_requests
    cdef public int pass_host
    cdef public bytes upstream_host
    cdef readonly tuple balancers        # one per priority level, highest first
    cdef Balancer first                  # balancers[0]
    cdef readonly bint observes          # the balancer wants each response time (ewma)
    cdef readonly object key_of          # chash: request -> key text
    cdef readonly bint checked           # some node has health checks
    cdef readonly bint fail_open         # every node down: try them anyway (else no node)
    cdef readonly PassiveChecks passive  # None: real traffic is not counted
    cdef readonly bint grpc              # scheme grpc/grpcs: calls go over pooled HTTP/2 sessions
    cdef UpstreamNode pick_failing_open(self, Exchange ex, set exclude)
    cpdef UpstreamNode pick(self, Exchange ex=*, set exclude=*)
    cdef void observe(self, UpstreamNode node, double seconds)
