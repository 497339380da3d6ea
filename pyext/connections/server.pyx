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
        self.h2_pool = H2UpstreamPool()
        self.scratch = HeadBuffer()
        self.draining = False
        self.sweep_interval = sweep_interval
        self.on_log = None
        self.requests_total = 0
        self.connections_total = 0
        self.clock = now_monotonic()
        self.scheme = "http"
        self.acceptor = None
        self.tls_misdirected = None
        self.tls_engine = None
        self.sweeper = loop.call_later(sweep_interval, self._sweep)
        self.pool.adopt(runtime)

    cdef void add_client(self, ClientConnection c):
        self.clients.add(c)
        self.connections_total += 1

    cdef void drop_client(self, ClientConnection c):
        # called again by connection_lost after close(): only the first call counts
        if c in self.clients:
            self.clients.discard(c)
            if self.acceptor is not None:
                self.acceptor.connection_gone()

    cdef void replace_client(self, ClientConnection old, ClientConnection new):
        """``new`` carries on ``old``'s transport (HTTP/2 taking over): one connection still."""
        self.clients.discard(old)
        self.clients.add(new)

    def protocol_factory(self):
        return ClientConnection(self)

    def tls_protocol_factory(self):
        """For the tls_listen sockets: rustls under a TlsTransport, which makes the
        ClientConnection once the handshake is done."""
        return TlsTransport(self)

    def set_runtime(self, Runtime runtime):
        self.pool.adopt(runtime)
        self.runtime = runtime

    @property
    def stats(self):
        return {"requests": self.requests_total, "connections": self.connections_total,
                "clients": len(self.clients), "upstream_connections": len(self.pool),
                "upstream_idle": self.pool.idle_counts()}

    @property
    def active_clients(self):
        return len(self.clients)

    @property
    def in_flight(self):
        cdef ClientConnection c
        return sum(1 for c in self.clients if c.state == C_ACTIVE)

    def start_draining(self, double idle_grace=DRAIN_IDLE_GRACE):
        """Stop keeping connections alive: each one's next response says Connection: close.
        An idle connection gets ``idle_grace`` seconds to send its next request first: closed
        at once, a request the client is sending right then would meet a reset."""
        cdef ClientConnection c
        cdef double until = now_monotonic() + idle_grace
        self.draining = True
        self.pool.draining = True
        self.h2_pool.drain()
        for c in list(self.clients):
            c.drain(until if idle_grace > 0 else 0)

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
        self.h2_pool.close_all()

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
            self.h2_pool.sweep(now)
        except Exception:
            log.exception("timeout sweep failed")
        finally:
            if self.sweeper is not None:
                self.sweeper = self.loop.call_later(self.sweep_interval, self._sweep)
