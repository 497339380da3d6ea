cdef enum:
    METRIC_CACHE_SIZE = 256              # a power of two

cdef struct MetricSlots:
    size_t route                         # identities (addresses) of the label set's objects
    size_t consumer
    size_t node
    int status
    int64_t series_slot
    int64_t status_slot

cdef class PrometheusLog(NativeHook):
    cdef object store                    # SharedMetrics: keeps the handle's mapping alive
    cdef const void *handle
    cdef MetricSlots cache[METRIC_CACHE_SIZE]
    cdef list holders                    # the objects behind each cache entry's addresses

    cdef MetricSlots *slots_for(self, Exchange ex)
