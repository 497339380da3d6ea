cdef class Response:
    cdef public int status
    cdef public bytes body
    cdef public object headers
