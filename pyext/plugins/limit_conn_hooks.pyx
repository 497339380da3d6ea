cdef class ConnLease:
    """One unit of a limit-conn gauge held by a request: given back once, by the log phase,
    or when the request context is dropped without one (its client went away)."""

    def release(self):
        self.give_back()

    cdef void give_back(self):
        cdef int64_t slot = self.slot
        self.slot = -1
        if slot >= 0:
            gw_limiter_gauge_release(self.handle, self.key_hash, slot)

    def __dealloc__(self):
        self.give_back()


cdef class LimitConnAccess(LimitAccess):
    """``limit-conn``'s access phase: one unit of the key's in-flight gauge, taken with one C
    call; the lease goes into the request state under the plugin (where the log phase, native
    or Python, finds it)."""

    def configure(self, uint64_t conn, uint64_t burst):
        self.conn = conn
        self.max_in_flight = conn + burst

    cdef object run(self, Exchange ex):
        cdef char key[LIMIT_KEY_MAX]
        cdef Py_ssize_t n = self.build_key(ex, key)
        cdef uint64_t in_flight, key_hash
        cdef int64_t slot
        cdef double delay = 0.0
        cdef ConnLease lease
        if n < 0:
            return self.method(ex)
        if not gw_limiter_gauge_acquire(self.handle, <const uint8_t *>key, <size_t>n,
                                        self.max_in_flight, &in_flight, &slot, &key_hash):
            return self.rejected
        if in_flight > self.conn:
            delay = <double>self.plugin.unit_delay * <double>((in_flight - 1) // self.conn)
        if slot >= 0:
            lease = ConnLease.__new__(ConnLease)
            lease.limiter = self.limiter
            lease.handle = self.handle
            lease.key_hash = key_hash
            lease.slot = slot
            lease.delay = delay
            ex.state_dict()[self.plugin] = lease
        if delay >= 0.001:
            return self.plugin._wait(delay)
        return None


cdef class LimitConnLog(NativeHook):
    """``limit-conn``'s log phase: gives the unit back and, unless only the default delay is
    used, moves the plugin's unit delay halfway towards this request's latency."""

    def configure(self, bint adapt_delay):
        self.adapt_delay = adapt_delay

    cdef object run(self, Exchange ex):
        cdef object lease
        cdef double latency
        if ex._state is None:
            return None
        lease = ex._state.pop(self.plugin, None)
        if lease is None:
            return None
        lease.release()
        if self.adapt_delay:
            # the time the request really took, without the delay this plugin added
            latency = ex.upstream_latency if ex.node is not None else \
                now_monotonic() - ex.start_time - <double>lease.delay
            if latency > 0:
                self.plugin.unit_delay = (<double>self.plugin.unit_delay + latency) / 2
        return None
