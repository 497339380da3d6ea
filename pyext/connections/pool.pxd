cdef class UpstreamPool:
    cdef dict idle_by_key                 # node key -> list of idle UpstreamConnection
    cdef set connections                  # every live upstream connection (the sweep's list)
    cdef bint draining

    cdef void adopt(self, Runtime runtime)
    cdef void track(self, UpstreamConnection u)
    cdef void untrack(self, UpstreamConnection u)
    cdef UpstreamConnection get(self, UpstreamNode node)
    cdef void put(self, UpstreamConnection u, UpstreamGroup group)
    cdef void forget(self, UpstreamConnection u)
