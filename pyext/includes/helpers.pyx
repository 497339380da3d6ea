cdef inline double now_monotonic() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline bint idempotent(int method_id):
    return (method_id == GW_METHOD_GET or method_id == GW_METHOD_HEAD or
            method_id == GW_METHOD_PUT or method_id == GW_METHOD_DELETE or
            method_id == GW_METHOD_OPTIONS or method_id == GW_METHOD_TRACE)


cdef inline bint upstream_method_idempotent(bytes method):
    """The same for a method a plugin set for the upstream request (proxy-rewrite)."""
    return method in (b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE")


cdef inline int64_t max_forwards(const char *d, gw_header *e):
    """The number in a Max-Forwards field line (RFC 9110 section 7.6.2); -1 if ``e`` is another
    field or its value is not a plain decimal number."""
    cdef const char *name = "max-forwards"
    cdef uint32_t k
    cdef char c
    cdef int64_t value = 0
    if e.name.len != 12 or e.value.len == 0 or e.value.len > 18:
        return -1
    for k in range(12):
        c = d[e.name.off + k]
        if b'A' <= c <= b'Z':
            c = c + 32
        if c != name[k]:
            return -1
    for k in range(e.value.len):
        c = d[e.value.off + k]
        if not (b'0' <= c <= b'9'):
            return -1
        value = value * 10 + (c - 48)
    return value


cdef int64_t max_forwards_left(gw_request_head *h, const char *d):
    """The first Max-Forwards value of the request; -1 without a valid one."""
    cdef uint32_t i
    cdef int64_t value
    for i in range(h.n_headers):
        value = max_forwards(d, &h.headers[i])
        if value >= 0:
            return value
    return -1


cdef inline gw_span span_of(size_t off, size_t length):
    cdef gw_span span
    span.off = <uint32_t>off
    span.len = <uint32_t>length
    return span


cdef list match_params(gw_params *params):
    """The route's path parameters as (name, value) strings; only routes with parameters pay."""
    cdef list out = []
    cdef uint32_t i
    cdef const uint8_t *name
    cdef const uint8_t *value
    cdef size_t name_len, value_len
    for i in range(gw_params_count(params)):
        gw_params_item(params, i, &name, &name_len, &value, &value_len)
        out.append(((<const char *>name)[:name_len].decode("utf-8", "replace"),
                    (<const char *>value)[:value_len].decode("utf-8", "replace")))
    return out


cdef inline bint field_name_is(const char *d, gw_span name, const char *lower, size_t lower_len):
    """The parsed field name at ``d[name]`` equals ``lower`` (lowercase), ignoring ASCII case."""
    cdef size_t j
    cdef char c
    if name.len != lower_len:
        return False
    for j in range(lower_len):
        c = d[name.off + j]
        if c >= 65 and c <= 90:
            c = c + 32
        if c != lower[j]:
            return False
    return True


cdef void set_tcp_nodelay(object transport):
    """Small writes (heads, HTTP/2 frames) leave at once, not after Nagle's delay: on every
    TCP connection the gateway makes or accepts (a unix socket has no such option)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
