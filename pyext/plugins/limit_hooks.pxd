cdef enum:
    LIMIT_KEY_MAX = 512                  # longer keys take the Python path

cdef class LimitAccess(NativeHook):
    cdef object limiter                  # SharedLimiter: keeps the handle's mapping alive
    cdef const void *handle
    cdef bytes scope                     # UTF-8 key prefix; None: decided per request (Python)
    cdef object request_key              # the plugin's key function (str) when not remote_addr
    cdef bint by_remote_addr             # the key is the client address: built in C
    cdef public object rejected
    cdef int64_t sync_tag                # policy redis (synced): the keys' tag; -1: local

    cdef Py_ssize_t build_key(self, Exchange ex, char *out) except -2

cdef class LimitCountAccess(LimitAccess):
    cdef uint64_t count
    cdef uint64_t window_ns
    cdef bint sliding
    cdef bint quota_headers
    cdef bytes limit_value

cdef class LimitReqAccess(LimitAccess):
    cdef double rate
    cdef double burst
    cdef bint nodelay
    cdef uint64_t counted_window_ns      # synced: the window its admissions are counted in
