cdef class ConnLease:
    cdef object limiter                  # SharedLimiter: keeps the handle's mapping alive
    cdef const void *handle
    cdef uint64_t key_hash
    cdef int64_t slot                    # -1 once given back
    cdef readonly double delay           # what limit-conn made the request wait

    cdef void give_back(self)

cdef class LimitConnAccess(LimitAccess):
    cdef uint64_t max_in_flight          # conn + burst
    cdef uint64_t conn

cdef class LimitConnLog(NativeHook):
    cdef bint adapt_delay
