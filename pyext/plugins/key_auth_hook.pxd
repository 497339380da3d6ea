cdef class KeyAuthAccess(NativeHook):
    cdef bytes header                    # the header to read, lowercase
    cdef dict by_value                   # key -> ConsumerEntry; None: not a route's instance
    cdef dict upstream_names             # ConsumerEntry -> (username, custom id or None) bytes

