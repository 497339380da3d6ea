cdef class Server:

    def __cinit__(self):
        self.match_params = gw_params_new()

    def __dealloc__(self):
        if self.match_params != NULL:
            gw_params_free(self.match_params)
            self.match_params = NULL

    def __init__(self, loop, Runtime runtime, double sweep_interval=0.25):
        self.loop = loop
        self.runtime = runtime
        self.clients = set()
        self.pool = UpstreamPool()
        self.scratch = HeadBuffer()
        self.draining = False
        self.sweep_interval = sweep_interval
        self.on_log = None
        self.requests_total = 0
        self.connections_total = 0
        self.clock = now_monotonic()
        self.tls_misdirected = None
        self.sweeper = loop.call_later(sweep_interval, self._sweep)
        self.pool.adopt(runtime)

    def protocol_factory(self):
        return ClientConnection(self)

    def tls_protocol_factory(self):
        """For the tls_listen sockets (uvloop's TLS transport runs the handshake first)."""
        return ClientConnection(self, True)

    def set_runtime(self, Runtime runtime):
        self.pool.adopt(runtime)
        self.runtime = runtime

    @property
    def stats(self):
        return {"requests": self.requests_total, "connections": self.connections_total,
                "clients": len(self.clients), "upstream_connections": len(self.pool)}

    @property
    def active_clients(self):
        return len(self.clients)

    @property
    def in_flight(self):
        cdef ClientConnection c
        return sum(1 for c in self.clients if c.state == C_ACTIVE)

    def start_draining(self):
        """Stop keeping connections alive: idle ones close now, busy ones after their response."""
        cdef ClientConnection c
        self.draining = True
        self.pool.draining = True
        for c in list(self.clients):
            if c.state == C_IDLE:
                c.close()

    def close_all(self):
        cdef ClientConnection c
        cdef UpstreamConnection u
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for c in list(self.clients):
            c.close()
        for u in list(self.pool.connections):
            u.close()

    def _sweep(self):
        """Enforces every timeout from one periodic pass instead of a timer per request."""
        cdef double now = now_monotonic()
        cdef ClientConnection c
        cdef UpstreamConnection u
        self.clock = now
        try:
            for c in list(self.clients):
                if c.deadline and now >= c.deadline:
                    c.on_timeout(now)
                if c.send_deadline and now >= c.send_deadline and c.state != C_CLOSED:
                    c.on_send_timeout(now)
            for u in list(self.pool.connections):
                if u.deadline and now >= u.deadline:
                    u.on_timeout(now)
        except Exception:
            log.exception("timeout sweep failed")
        finally:
            if self.sweeper is not None:
                self.sweeper = self.loop.call_later(self.sweep_interval, self._sweep)
