cdef class UpstreamNode:

    def __init__(self, str host, int port, int weight=1, int priority=0, str name=None,
                 object ssl=None, str server_hostname=None):
        self.host = host
        self.port = port
        self.weight = weight
        self.priority = priority
        self.name = name
        self.ssl = ssl
        self.server_hostname = server_hostname if ssl is not None else None
        # a TLS connection is only reused for the same context and server name
        self.key = (host, port) if ssl is None else (host, port, id(ssl), self.server_hostname)
        # pass_host=node sends the node's name as the config wrote it, not the address it
        # resolved to (virtual hosts behind one address)
        shown = name or host
        if ":" in shown:
            self.host_header = f"[{shown}]:{port}".encode()
        else:
            self.host_header = f"{shown}:{port}".encode() if port != 80 else shown.encode()
        self.active = 0
        self.idle = []

    def watch_health(self, object table, int64_t slot):
        """The node's health is the state of ``slot`` in ``table`` (a SharedHealth): the
        balancer skips it while that says down, passive checks report into it."""
        cdef size_t state = table.state_address(slot)
        if state == 0:
            raise ValueError(f"no health slot {slot}")
        self.health_owner = table
        self.health_table = <const void *><size_t>table._handle
        self.health_slot = slot
        self.health = <const uint64_t *>state

    @property
    def down(self):
        """Whether its health checks have marked the node down (False without checks)."""
        return self.health != NULL and gw_node_down(self.health)

    cdef void share_idle(self, dict idle_by_key):
        """Takes the idle-connection list an equal node (same host and port) of an earlier
        config version had, or offers its own: a reload keeps the warm connections."""
        self.idle = idle_by_key.setdefault(self.key, self.idle)

    cdef void acquire(self):
        """A request of this worker is now going to the node (least_conn and ewma count it)."""
        self.active += 1

    cdef void release(self):
        """That request is done with the node, whichever way it ended."""
        if self.active > 0:
            self.active -= 1

    def __repr__(self):
        named = f" ({self.name})" if self.name else ""
        return f"UpstreamNode({self.host}:{self.port}{named}, weight={self.weight})"


PASS_HOST_PASS = 0
PASS_HOST_NODE = 1
PASS_HOST_REWRITE = 2

#: balancer type (the config's `type`) -> its class
BALANCERS = {
    "roundrobin": RoundRobinBalancer,
    "least_conn": LeastConnBalancer,
    "chash": ChashBalancer,
    "ewma": EwmaBalancer,
}


cdef class UpstreamGroup:

    def __init__(self, str id, list nodes, str type="roundrobin", int retries=1,
                 double connect_timeout=6.0, double send_timeout=60.0, double read_timeout=60.0,
                 int keepalive_size=320, double keepalive_idle=60.0, int keepalive_requests=1000,
                 int pass_host=0, bytes upstream_host=b"", object key_of=None,
                 tuple balancers=None, PassiveChecks passive=None, bint fail_open=True,
                 double retry_timeout=0.0, frozenset retry_statuses=None, bint grpc=False):
        cdef UpstreamNode node
        if type not in BALANCERS:
            raise ValueError(f"unknown balancer type {type!r} (known: {', '.join(BALANCERS)})")
        self.id = id
        self.nodes = [n for n in nodes if (<UpstreamNode>n).weight > 0] or list(nodes)
        self.type = type
        self.retries = retries
        self.retry_timeout = retry_timeout
        self.retry_statuses = retry_statuses or None
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.read_timeout = read_timeout
        self.keepalive_size = keepalive_size
        self.keepalive_idle = keepalive_idle
        self.keepalive_requests = keepalive_requests
        self.pass_host = pass_host
        self.upstream_host = upstream_host
        self.key_of = key_of
        if balancers is None:
            # one balancer per priority level, highest first (APISIX's priority balancer)
            levels = {}
            for node in self.nodes:
                levels.setdefault(node.priority, []).append(node)
            make = BALANCERS[type]
            balancers = tuple(make(levels[p], key_of) if type == "chash" else make(levels[p])
                              for p in sorted(levels, reverse=True))
        self.balancers = balancers or (RoundRobinBalancer([]),)
        self.first = <Balancer>self.balancers[0]
        self.observes = type == "ewma"
        self.checked = any((<UpstreamNode>n).health != NULL for n in self.nodes)
        self.passive = passive if self.checked else None
        self.fail_open = fail_open
        self.grpc = grpc

    def with_timeouts(self, double connect_timeout, double send_timeout, double read_timeout):
        """The same nodes and balancer state (a route's own timeouts over a shared upstream)."""
        return UpstreamGroup(self.id, self.nodes, self.type, self.retries, connect_timeout,
                             send_timeout, read_timeout, self.keepalive_size, self.keepalive_idle,
                             self.keepalive_requests, self.pass_host, self.upstream_host,
                             self.key_of, self.balancers, self.passive, self.fail_open,
                             self.retry_timeout, self.retry_statuses, self.grpc)

    cpdef UpstreamNode pick(self, Exchange ex=None, set exclude=None):
        """The node for this request, not one in ``exclude`` (the nodes it already failed on)
        nor one its health checks marked down: the highest priority level with a usable node
        decides. With every such node down, a group that fails open picks among them."""
        cdef UpstreamNode node = self.first.pick(ex, exclude)
        cdef Py_ssize_t i
        if node is not None:
            return node
        for i in range(1, len(self.balancers)):
            node = (<Balancer>self.balancers[i]).pick(ex, exclude)
            if node is not None:
                return node
        if self.checked and self.fail_open:
            return self.pick_failing_open(ex, exclude)
        return None

    cdef UpstreamNode pick_failing_open(self, Exchange ex, set exclude):
        """Every node not yet tried is down: pick as if none were (APISIX's and nginx's
        behaviour; a health check may be wrong, a request that is not sent always fails)."""
        cdef Balancer balancer
        cdef UpstreamNode node = None
        for balancer in self.balancers:
            balancer.health_blind = True
        try:
            for balancer in self.balancers:
                node = balancer.pick(ex, exclude)
                if node is not None:
                    break
        finally:
            for balancer in self.balancers:
                balancer.health_blind = False
        return node

    cdef void observe(self, UpstreamNode node, double seconds):
        """The response from ``node`` took ``seconds`` (to its head)."""
        cdef double now = now_monotonic()
        cdef Balancer balancer
        for balancer in self.balancers:
            balancer.observe(node, seconds, now)

    def report(self, UpstreamNode node, double seconds):
        """``observe`` from Python (tests)."""
        self.observe(node, seconds)
