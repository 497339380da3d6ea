cdef class TryLog:
    """The tries of a request that was retried, made at its first retry: a request whose first
    try succeeds allocates nothing for retries. The log phase reads the tries; the retry logic
    keeps which nodes failed and when the first try started (``retry_timeout`` counts from
    it)."""

    def __init__(self, double first_start):
        self.tries = []
        self.failed_nodes = None
        self.first_start = first_start

    cdef void add(self, UpstreamNode node, int status, double seconds, Py_ssize_t node_count):
        """A try on ``node`` ended with ``status`` after ``seconds`` and another one follows:
        ``node`` is skipped while one of the ``node_count`` nodes has not failed yet, then
        every node may be tried again."""
        self.tries.append((node_address(node), status, seconds))
        if self.failed_nodes is None:
            self.failed_nodes = set()
        self.failed_nodes.add(node)
        if len(self.failed_nodes) >= node_count:
            self.failed_nodes = None


cdef str node_address(UpstreamNode node):
    """nginx's $upstream_addr form of a node: "host:port", "[v6]:port"."""
    if ":" in node.host:
        return f"[{node.host}]:{node.port}"
    return f"{node.host}:{node.port}"
