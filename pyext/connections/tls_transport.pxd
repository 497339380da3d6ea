cdef class TlsTransport:
    cdef Server server
    cdef ClientConnection client
    cdef object raw                        # the socket's uvloop transport: records go there
    cdef object conn                       # gateway._native.TlsConnection (rustls)
    cdef object handshake_timer
    cdef bint handshaking
    cdef bint closing
    cdef void fail(self, str reason)
