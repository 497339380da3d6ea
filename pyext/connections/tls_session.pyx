cdef class TlsSession:
    """What the TLS handshake settled for one client connection, read once when the connection
    is made (uvloop's TLS transport hands the protocol a connection only after the handshake).
    It is the seam between the TLS layer and the protocol that runs over it: the negotiated
    ALPN protocol says which one (today always HTTP/1.1), the server name and the client
    certificate feed the request variables, and ``refusal`` says why mTLS refuses requests."""

    def __init__(self, ssl_object):
        self.ssl_object = ssl_object
        self.server_name = getattr(ssl_object, "server_name_indication", None)
        context = ssl_object.context
        self.ssl_id = getattr(context, "ssl_id", None) or None
        self.client_cert_required = bool(getattr(context, "client_cert_required", False))

    @property
    def alpn_protocol(self):
        """The ALPN protocol chosen ("http/1.1"), or None when the client offered none."""
        return self.ssl_object.selected_alpn_protocol()

    @property
    def protocol(self):
        """"TLSv1.2" or "TLSv1.3" (nginx's $ssl_protocol)."""
        return self.ssl_object.version()

    @property
    def cipher(self):
        """The cipher suite's OpenSSL name (nginx's $ssl_cipher)."""
        cipher = self.ssl_object.cipher()
        return cipher[0] if cipher else None

    @property
    def client_cert(self):
        """The client's certificate (DER bytes) when it sent one that verified, else None."""
        return self.ssl_object.getpeercert(True)

    cdef str refusal(self):
        """Why requests on this connection are refused, or None."""
        if self.client_cert_required and self.ssl_object.getpeercert(True) is None:
            # nginx's answer when `ssl_verify_client on` meets a client without a certificate
            return "No required SSL certificate was sent"
        return None
