cdef class TryLog:
    cdef readonly list tries             # (address, status, seconds) of the ended tries
    cdef set failed_nodes                # not picked again while another node is left
    cdef readonly double first_start     # when the first try started (retry_timeout's origin)

    cdef void add(self, UpstreamNode node, int status, double seconds, Py_ssize_t node_count)
