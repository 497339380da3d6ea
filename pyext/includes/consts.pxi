# Connection states (client side)
cdef enum:
    C_IDLE = 0        # between requests (keep-alive), nothing buffered
    C_HEAD = 1        # part of a request head received
    C_ACTIVE = 2      # a request is in flight (its body may still be arriving)
    C_CLOSED = 3
    C_LINGER = 4      # answered and half-closed; input is read and dropped until the peer closes
    C_TUNNEL = 5      # upgraded (WebSocket): bytes flow both ways untouched

# Upstream connection states
cdef enum:
    U_CONNECTING = 0
    U_IDLE = 1        # in the pool
    U_HEAD = 2        # request sent (or being sent), waiting for the response head
    U_BODY = 3        # response body streaming
    U_CLOSED = 4
    U_TUNNEL = 5      # upgraded: never returns to the pool

# How a local response treats the connection afterwards
cdef enum:
    KEEP = 0
    CLOSE = 1

# Buffered request bytes above which reading from the client pauses (pipelined requests, a body
# arriving before the upstream connection is ready).
DEF CLIENT_BUFFER_HIGH = 262144
DEF HEAD_SCRATCH = 8192
# No head the writer builds may exceed this (heads are limited to far less by the parsers).
DEF HEAD_BUFFER_MAX = 16777216
DEF LINGER_SECONDS = 2.0
DEF INLINE_BODY_MAX = 16384
# A side's unsent bytes above WRITE_HIGH_WATER pause reading from the other side until they
# drain below WRITE_LOW_WATER: bodies stream through a bounded buffer, never whole.
DEF WRITE_HIGH_WATER = 262144
DEF WRITE_LOW_WATER = 65536

# Router outcome codes (rust/router: NOT_FOUND, METHOD_NOT_ALLOWED, BAD_PATH)
DEF ROUTE_BAD_PATH = -3
