cdef class Balancer:
    cdef readonly tuple nodes            # the nodes of one priority level, in config order
    cdef Py_ssize_t count
    cdef bint health_blind               # set only while an upstream fails open

    cdef UpstreamNode pick(self, Exchange ex, set exclude)
    cdef bint usable(self, UpstreamNode node, set exclude)
    cdef void observe(self, UpstreamNode node, double seconds, double now)
    cdef Py_ssize_t index_of(self, UpstreamNode node)

cdef class RoundRobinBalancer(Balancer):
    cdef int *current                    # smooth weighted round robin state, per node
    cdef int total_weight

cdef class LeastConnBalancer(Balancer):
    cdef Py_ssize_t cursor               # where the scan starts: ties go round robin

cdef class ChashBalancer(Balancer):
    cdef uint64_t *points                # the ring: sorted point hashes
    cdef int *owners                     # owners[i]: index in `nodes` of points[i]'s node
    cdef readonly Py_ssize_t size        # number of points on the ring
    cdef readonly object key_of          # request -> key text (None: the request has none)

    cdef UpstreamNode lookup(self, uint64_t h, set exclude)

cdef class EwmaBalancer(Balancer):
    cdef double *ewma                    # peak-EWMA of each node's response time, seconds
    cdef double *stamp                   # when it was last updated (monotonic seconds)
    cdef uint64_t rng                    # xorshift64 state for the two random choices
    cdef readonly double decay_time

    cdef double score(self, Py_ssize_t i, double now)
    cdef uint64_t next_random(self)
