cdef bint log_tls_connect_failure(str upstream_id, UpstreamNode node, object exc):
    """Logs why a connection to an https node failed, in the words an operator acts on: a
    refused certificate (its reason), a handshake the node broke off. False: not TLS's doing
    (a refused connect), left to the plain connect failure line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS handshake failed: {exc.reason or exc}"
    elif isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        reason = f"connection lost during the TLS handshake ({exc})"
    else:
        return False
    log.warning("upstream %s: TLS to %s:%d (server name %s) failed: %s", upstream_id, node.host,
                node.port, node.server_hostname, reason)
    return True

