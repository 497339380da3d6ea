cdef class PrometheusLog(NativeHook):
    """``prometheus``'s log phase: finds the label set's two slots in a direct-mapped cache
    keyed by the identities of (route, consumer, node, status), and records the request into
    the shared-memory store with one C call. A miss claims the slots through the plugin (which
    formats the labels) and keeps the objects referenced, so an address in the cache can never
    belong to another object."""

    def __cinit__(self, plugin, str phase):
        self.holders = [None] * METRIC_CACHE_SIZE

    def bind_store(self, store):
        """The store the master created; without one (outside a worker) the plugin's Python
        method records into a process-local store."""
        self.store = store
        self.handle = <const void *><size_t>store._handle if store is not None else NULL

    cdef object run(self, Exchange ex):
        cdef MetricSlots *slots
        if self.handle == NULL:
            return self.method(ex)
        slots = self.slots_for(ex)
        gw_metrics_record(self.handle, slots.series_slot, slots.status_slot,
                          now_monotonic() - ex.start_time, ex.upstream_latency,
                          ex.head.head_len + ex.body_bytes, ex.bytes_sent)
        return None

    cdef MetricSlots *slots_for(self, Exchange ex):
        cdef size_t route = <size_t><void *>ex.route
        cdef size_t consumer = <size_t><void *>ex.consumer
        cdef size_t node = <size_t><void *>ex.node
        cdef size_t mix = (route >> 4) * 31 + (consumer >> 4) * 17 + (node >> 4) * 7 + \
            <size_t>ex.status
        cdef size_t i = (mix ^ (mix >> 9)) & (METRIC_CACHE_SIZE - 1)
        cdef MetricSlots *e = &self.cache[i]
        if e.route == route and e.consumer == consumer and e.node == node and \
                e.status == ex.status and self.holders[i] is not None:
            return e
        series_slot, status_slot = self.plugin.claim_slots(
            self.store, ex.route_id, ex.consumer, ex.node, ex.status)
        self.holders[i] = (ex.route, ex.consumer, ex.node)
        e.route = route
        e.consumer = consumer
        e.node = node
        e.status = ex.status
        e.series_slot = series_slot
        e.status_slot = status_slot
        return e
