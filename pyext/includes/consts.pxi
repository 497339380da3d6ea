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
# Idle keep-alive connections of a draining worker close after this long without a request.
DEF DRAIN_IDLE_GRACE = 1.0
DEF INLINE_BODY_MAX = 16384
# A side's unsent bytes above WRITE_HIGH_WATER pause reading from the other side until they
# drain below WRITE_LOW_WATER: bodies stream through a bounded buffer, never whole.
DEF WRITE_HIGH_WATER = 262144
DEF WRITE_LOW_WATER = 65536

# Router outcome codes (rust/router: NOT_FOUND, METHOD_NOT_ALLOWED, BAD_PATH)
DEF ROUTE_BAD_PATH = -3
