# The state word of a node with health checks lives in shared memory (rust/health); bit 63 says
# the node is down. Relaxed loads: a pick may see a change one pick late, never a torn word.
cdef extern from *:
    """
    static inline uint64_t gw_node_state(const uint64_t *state) {
        return __atomic_load_n(state, __ATOMIC_RELAXED);
    }
    static inline int gw_node_down(const uint64_t *state) {
        return (int)(__atomic_load_n(state, __ATOMIC_RELAXED) >> 63);
    }
    """
    uint64_t gw_node_state(const uint64_t *state) nogil
    bint gw_node_down(const uint64_t *state) nogil

cdef enum HealthOutcome:
    HEALTH_SUCCESS = 0
    HEALTH_HTTP_FAILURE = 1
    HEALTH_TCP_FAILURE = 2
    HEALTH_TIMEOUT = 3

cdef class PassiveChecks:
    cdef readonly str upstream_id
    cdef uint32_t thresholds             # successes | http << 8 | tcp << 16 | timeouts << 24
    cdef uint8_t verdict[600]            # status -> 0 not counted, 1 healthy, 2 unhealthy

    cdef void on_status(self, UpstreamNode node, int status)
    cdef void on_failure(self, UpstreamNode node, int gateway_status)
    cdef void report(self, UpstreamNode node, HealthOutcome outcome, int status)
