cdef class UpstreamPool:
    """One worker's keep-alive connections to upstream nodes. The idle list of a node lives on
    the node (one attribute read per request) and is shared by equal nodes (same host and
    port) of every config version; the pool decides what is kept and what is closed."""

    def __init__(self):
        self.idle_by_key = {}
        self.connections = set()
        self.draining = False

    cdef void adopt(self, Runtime runtime):
        """Nodes of a new config version share the idle lists of equal nodes of the previous
        one, so a reload keeps the warm upstream connections."""
        cdef RouteEntry route
        cdef UpstreamNode node
        for route in runtime.routes:
            if route.upstream is None:
                continue
            for node in route.upstream.nodes:
                node.share_idle(self.idle_by_key)

    cdef void track(self, UpstreamConnection u):
        self.connections.add(u)

    cdef void untrack(self, UpstreamConnection u):
        self.connections.discard(u)
        self.forget(u)

    cdef UpstreamConnection get(self, UpstreamNode node):
        """An idle connection to ``node`` that is still open, or None."""
        cdef list idle = node.idle
        cdef UpstreamConnection u
        while idle:
            u = <UpstreamConnection>idle.pop()
            if u.state == U_IDLE and u.is_open():
                return u
        return None

    cdef void put(self, UpstreamConnection u, UpstreamGroup group):
        """Back after a complete response: kept within the group's keepalive settings,
        closed otherwise (and always while draining)."""
        cdef list idle = u.node.idle
        if (self.draining or u.requests >= group.keepalive_requests or group.keepalive_size <= 0
                or not u.is_open() or len(idle) >= group.keepalive_size):
            u.close()
            return
        u.park(group.keepalive_idle)
        idle.append(u)

    cdef void forget(self, UpstreamConnection u):
        cdef list idle = u.node.idle if u.node is not None else None
        if idle:
            try:
                idle.remove(u)
            except ValueError:
                pass

    def idle_counts(self):
        """Idle connections by node ("host:port"; TLS ones "https://host:port" with the
        server name they were made for, when it is not the address)."""
        counts = {}
        for key, idle in self.idle_by_key.items():
            if not idle:
                continue
            label = f"{key[0]}:{key[1]}"
            if len(key) > 2:
                label = f"https://{label}" if key[3] == key[0] else f"https://{label} ({key[3]})"
            counts[label] = counts.get(label, 0) + len(idle)
        return counts

    def __len__(self):
        return len(self.connections)
