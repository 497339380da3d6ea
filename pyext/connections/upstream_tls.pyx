cdef void log_tls_connect_failure(str upstream_id, UpstreamNode node, object exc):
    """Why a connection to an https node failed, in the words an operator acts on: a refused
    certificate (its reason), a handshake the node broke off, or the TCP error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS handshake failed: {exc.reason or exc}"
    elif isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        reason = f"connection lost during the TLS handshake ({exc})"
    else:
        return  # not TLS's doing: the plain connect failure line says it
    log.warning("upstream %s: TLS to %s:%d (server name %s) failed: %s", upstream_id, node.host,
                node.port, node.server_hostname, reason)
