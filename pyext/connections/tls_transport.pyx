cdef class TlsTransport:
    """TLS on a tls_listen socket, with rustls (rust/tls): the protocol of the socket's
    transport, and the transport of the ClientConnection that speaks HTTP over it.

    Each socket read goes to rustls in one call, which writes the records to send back
    (handshake, tickets, alerts) to the socket and returns the plaintext; each response write
    is encrypted in one call. The ClientConnection is made when the handshake completes (as
    with uvloop's TLS transport), so it never sees a connection that did not finish one."""

    def __init__(self, Server server):
        self.server = server
        self.client = ClientConnection(server, True)
        self.handshaking = True

    # -- the socket's protocol --------------------------------------------------------------

    def connection_made(self, transport):
        self.raw = transport
        self.conn = self.server.tls_engine.connection(transport.write)
        # the handshake must finish within the time a request head may take
        self.handshake_timer = self.server.loop.call_later(
            self.server.runtime.header_timeout, self._handshake_timeout)

    def data_received(self, bytes data):
        cdef object plain
        if self.closing:
            return
        try:
            plain = self.conn.receive(data)
        except ConnectionError as exc:
            self.fail(str(exc))
            return
        if self.handshaking:
            if self.conn.handshaking:
                return
            self.handshaking = False
            self.handshake_timer.cancel()
            self.handshake_timer = None
            self.client.connection_made(self)
        if plain is not None:
            self.client.data_received(plain)
        elif self.conn.peer_closed:
            # close_notify: the client sends nothing more, as with a TCP FIN
            if not self.client.eof_received():
                self.close()

    def eof_received(self):
        if self.handshaking:
            return False
        return self.client.eof_received()

    def connection_lost(self, exc):
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        if self.conn is not None:
            self.conn.detach()
        if not self.handshaking:
            self.client.connection_lost(exc)

    def pause_writing(self):
        if not self.handshaking:
            self.client.pause_writing()

    def resume_writing(self):
        if not self.handshaking:
            self.client.resume_writing()

    def _handshake_timeout(self):
        self.handshake_timer = None
        if self.handshaking and not self.closing:
            self.closing = True
            self.raw.abort()

    cdef void fail(self, str reason):
        """A refused handshake or a bad record: the alert is written; close after it."""
        log.debug("TLS connection closed: %s", reason)
        self.closing = True
        self.raw.close()

    # -- the ClientConnection's transport ----------------------------------------------------

    def write(self, data):
        if self.closing:
            return
        if type(data) is not bytes:
            data = bytes(data)
        try:
            self.conn.send(data)
        except ConnectionError as exc:
            self.fail(str(exc))

    def writelines(self, parts):
        self.write(b"".join(parts))

    def can_write_eof(self):
        return False  # TLS has no half-close: close_notify ends both directions

    def write_eof(self):
        raise NotImplementedError("TLS connections cannot half-close")

    def close(self):
        if self.closing:
            return
        self.closing = True
        try:
            self.conn.close_notify()
        except ConnectionError:
            pass
        self.raw.close()

    def abort(self):
        self.closing = True
        self.raw.abort()

    def is_closing(self):
        return self.closing or self.raw.is_closing()

    def pause_reading(self):
        self.raw.pause_reading()

    def resume_reading(self):
        self.raw.resume_reading()

    def get_write_buffer_size(self):
        return self.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high=None, low=None):
        self.raw.set_write_buffer_limits(high, low)

    def set_protocol(self, ClientConnection protocol):
        """The client chose HTTP/2 (ALPN h2): its session speaks over this connection now."""
        self.client = protocol

    def get_protocol(self):
        return self.client

    def get_extra_info(self, name, default=None):
        if name == "tls":
            return self.conn
        return self.raw.get_extra_info(name, default)
