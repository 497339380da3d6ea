cdef class TlsSession:
    cdef readonly object connection       # the rustls connection (gateway._native.TlsConnection)
    cdef readonly str server_name         # the SNI the client sent (None: none sent)
    cdef readonly str ssl_id              # the ssl resource whose certificate was served
    cdef readonly bint client_cert_required
    cdef str refusal(self)
