cdef class LimitAccess(NativeHook):
    """The access phase of a shared-memory limit (limit-count, limit-req): the key is built in
    a stack buffer (scope, then the client address or the plugin's key function's text) and
    decided with one C call into the limiter. Keys are hashed as the Python methods hash a str
    key's UTF-8 bytes, so this path and the plugin's Python method count the same keys.
    A synced limit (``policy: redis`` without ``redis_strict``) counts under the synced keys
    of its tag (``synced_key``), where the master's syncer finds them."""

    def __cinit__(self, *args):
        self.sync_tag = -1

    def sync_under(self, int64_t tag):
        """Counts under the synced keys of ``tag`` (gateway._native.synced_key) from now on."""
        self.sync_tag = tag

    def bind_limiter(self, limiter, scope, request_key, bint by_remote_addr):
        """``scope`` is the plugin's fixed key prefix (str), or None when it depends on the
        request (a global rule's or a consumer's instance): those requests take the Python
        path."""
        self.limiter = limiter
        self.handle = <const void *><size_t>limiter._handle
        self.scope = scope.encode("utf-8") if scope is not None else None
        self.request_key = request_key
        self.by_remote_addr = by_remote_addr

    cdef Py_ssize_t build_key(self, Exchange ex, char *out) except -2:
        """Writes the request's key to ``out``; -1 when it does not fit (or has no fixed
        scope): the caller takes the Python path."""
        cdef bytes tail
        cdef Py_ssize_t n, m
        if self.scope is None or self.handle == NULL:
            return -1
        if self.by_remote_addr:
            tail = ex.client.client_ip
        else:
            tail = (<str>self.request_key(ex)).encode("utf-8")
        n = PyBytes_GET_SIZE(self.scope)
        m = PyBytes_GET_SIZE(tail)
        if n + m > LIMIT_KEY_MAX:
            return -1
        memcpy(out, PyBytes_AS_STRING(self.scope), n)
        memcpy(out + n, PyBytes_AS_STRING(tail), m)
        return n + m


cdef class LimitCountAccess(LimitAccess):
    """``limit-count``: the window counter, and the quota headers as bytes."""

    def configure(self, uint64_t count, double window, bint sliding, bint quota_headers):
        self.count = count
        self.window_ns = <uint64_t>(window * 1e9 + 0.5) if window * 1e9 >= 1 else 1
        self.sliding = sliding
        self.quota_headers = quota_headers
        self.limit_value = str(count).encode()

    cdef object run(self, Exchange ex):
        cdef char key[LIMIT_KEY_MAX]
        cdef Py_ssize_t n = self.build_key(ex, key)
        cdef uint64_t remaining, reset_ns
        cdef int32_t admitted
        if n < 0:
            return self.method(ex)
        admitted = gw_limiter_count(self.handle, <const uint8_t *>key, <size_t>n, self.sync_tag,
                                    self.count, self.window_ns, 1, self.sliding, &remaining,
                                    &reset_ns)
        if self.quota_headers:
            ex.add_response_header_bytes(b"X-RateLimit-Limit", self.limit_value)
            ex.add_response_header_bytes(b"X-RateLimit-Remaining", uint_bytes(remaining))
            # whole seconds, rounded up
            ex.add_response_header_bytes(b"X-RateLimit-Reset",
                                         uint_bytes((reset_ns + 999999999) // 1000000000))
        if not admitted:
            return self.rejected
        return None


cdef class LimitReqAccess(LimitAccess):
    """``limit-req``: the token bucket; a delayed request waits in the plugin's coroutine. A
    synced bucket also counts its admissions in a window of ``counted_window`` seconds, which
    the syncer pushes."""

    def configure(self, double rate, double burst, bint nodelay, double counted_window=0.0):
        self.rate = rate
        self.burst = burst
        self.nodelay = nodelay
        self.counted_window_ns = <uint64_t>(counted_window * 1e9)

    cdef object run(self, Exchange ex):
        cdef char key[LIMIT_KEY_MAX]
        cdef Py_ssize_t n = self.build_key(ex, key)
        cdef uint64_t delay_ns
        if n < 0:
            return self.method(ex)
        if not gw_limiter_acquire(self.handle, <const uint8_t *>key, <size_t>n, self.sync_tag,
                                  self.counted_window_ns, self.rate, self.burst, 1.0, &delay_ns):
            return self.rejected
        if delay_ns > 1000000 and not self.nodelay:
            return self.plugin._wait(delay_ns / 1e9)
        return None
