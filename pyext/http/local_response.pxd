cdef class Response:
    cdef public int status
    cdef public bytes body
    cdef public object headers
    cdef public int grpc_status           # what a gRPC client is told (-1: from the HTTP status)
