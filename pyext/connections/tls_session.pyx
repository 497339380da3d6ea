cdef class TlsSession:
    """What the TLS handshake settled for one client connection, read once when the connection
    is made (the TlsTransport hands the protocol a connection only after the handshake).
    It is the seam between the TLS layer and the protocol that runs over it: the negotiated
    ALPN protocol says which one (today always HTTP/1.1), the server name and the client
    certificate feed the request variables, and ``refusal`` says why mTLS refuses requests."""

    def __init__(self, connection):
        self.connection = connection
        self.server_name = connection.server_name
        self.ssl_id = connection.ssl_id
        self.client_cert_required = connection.client_cert_required

    @property
    def alpn_protocol(self):
        """The ALPN protocol chosen ("http/1.1"), or None when the client offered none."""
        return self.connection.alpn_protocol

    @property
    def protocol(self):
        """"TLSv1.2" or "TLSv1.3" (nginx's $ssl_protocol)."""
        return self.connection.protocol

    @property
    def cipher(self):
        """The cipher suite's OpenSSL name (nginx's $ssl_cipher)."""
        return self.connection.cipher

    @property
    def client_cert(self):
        """The client's certificate (DER bytes) when it sent one that verified, else None."""
        return self.connection.client_cert

    cdef str refusal(self):
        """Why requests on this connection are refused, or None."""
        if self.client_cert_required and self.connection.client_cert is None:
            # nginx's answer when `ssl_verify_client on` meets a client without a certificate
            return "No required SSL certificate was sent"
        return None
