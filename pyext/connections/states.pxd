"""The connections' named states. Each class changes its own state only through its
``set_state`` method; other classes call its methods (uvloop's sslproto ``_set_state``)."""

# Connection states (client side); changed only by ClientConnection.set_state
cdef enum ClientState:
    C_IDLE = 0        # between requests (keep-alive), nothing buffered
    C_HEAD = 1        # part of a request head received
    C_ACTIVE = 2      # a request is in flight (its body may still be arriving)
    C_CLOSED = 3
    C_LINGER = 4      # answered and half-closed; input is read and dropped until the peer closes
    C_TUNNEL = 5      # upgraded (WebSocket): bytes flow both ways untouched

# Upstream connection states; changed only by UpstreamConnection.set_state
cdef enum UpstreamState:
    U_CONNECTING = 0
    U_IDLE = 1        # in the pool
    U_HEAD = 2        # request sent (or being sent), waiting for the response head
    U_BODY = 3        # response body streaming
    U_CLOSED = 4
    U_TUNNEL = 5      # upgraded: never returns to the pool
