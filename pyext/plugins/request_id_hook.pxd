cdef class RequestIdRewrite(NativeHook):
    cdef bytes header                    # as configured
    cdef bytes lower_header
    cdef bint in_response                # include_in_response
    cdef bint uuid                       # algorithm uuid: made here; others: the plugin's
