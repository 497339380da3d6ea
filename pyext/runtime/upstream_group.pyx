cdef class UpstreamNode:

    def __init__(self, str host, int port, int weight=1):
        self.host = host
        self.port = port
        self.weight = weight
        self.key = (host, port)
        if ":" in host:
            self.host_header = f"[{host}]:{port}".encode()
        else:
            self.host_header = f"{host}:{port}".encode() if port != 80 else host.encode()
        self.current_weight = 0
        self.active = 0
        self.idle = []

    cdef void share_idle(self, dict idle_by_key):
        """Takes the idle-connection list an equal node (same host and port) of an earlier
        config version had, or offers its own: a reload keeps the warm connections."""
        self.idle = idle_by_key.setdefault(self.key, self.idle)

    def __repr__(self):
        return f"UpstreamNode({self.host}:{self.port}, weight={self.weight})"


PASS_HOST_PASS = 0
PASS_HOST_NODE = 1
PASS_HOST_REWRITE = 2


cdef class UpstreamGroup:

    def __init__(self, str id, list nodes, str type="roundrobin", int retries=1,
                 double connect_timeout=6.0, double send_timeout=60.0, double read_timeout=60.0,
                 int keepalive_size=320, double keepalive_idle=60.0, int keepalive_requests=1000,
                 int pass_host=0, bytes upstream_host=b""):
        self.id = id
        self.nodes = [n for n in nodes if (<UpstreamNode>n).weight > 0] or list(nodes)
        self.type = type
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.read_timeout = read_timeout
        self.keepalive_size = keepalive_size
        self.keepalive_idle = keepalive_idle
        self.keepalive_requests = keepalive_requests
        self.pass_host = pass_host
        self.upstream_host = upstream_host
        self.total_weight = sum((<UpstreamNode>n).weight for n in self.nodes)

    cpdef UpstreamNode pick(self, object exclude=None):
        """Smooth weighted round robin (nginx's algorithm): even spread, exact weights."""
        cdef UpstreamNode node, best = None
        cdef int n = len(self.nodes)
        if n == 1:
            node = <UpstreamNode>self.nodes[0]
            if exclude is None or node not in exclude:
                return node
            return None
        for node in self.nodes:
            if exclude is not None and node in exclude:
                continue
            node.current_weight += node.weight
            if best is None or node.current_weight > best.current_weight:
                best = node
        if best is not None:
            best.current_weight -= self.total_weight
        return best
