cdef inline double now_monotonic() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline bint idempotent(int method_id):
    return (method_id == GW_METHOD_GET or method_id == GW_METHOD_HEAD or
            method_id == GW_METHOD_PUT or method_id == GW_METHOD_DELETE or
            method_id == GW_METHOD_OPTIONS or method_id == GW_METHOD_TRACE)


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
