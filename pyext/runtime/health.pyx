# Passive health checks: what real requests to a node found, counted by every worker into the
# node's shared state (rust/health). The exchange calls these where a try ends, only for an
# upstream whose `checks` have a `passive` part (`group.passive` is None otherwise).


cdef class PassiveChecks:
    """One upstream's passive check settings: which statuses count as healthy or unhealthy and
    the thresholds (APISIX's ``checks.passive``)."""

    def __init__(self, str upstream_id, healthy_statuses, unhealthy_statuses, int successes,
                 int http_failures, int tcp_failures, int timeouts):
        cdef int status
        self.upstream_id = upstream_id
        for status in range(600):
            self.verdict[status] = 0
        for status in healthy_statuses:
            if 0 <= status < 600:
                self.verdict[status] = 1
        for status in unhealthy_statuses:
            if 0 <= status < 600:
                self.verdict[status] = 2
        self.thresholds = (<uint32_t>(successes & 0xff) | <uint32_t>(http_failures & 0xff) << 8
                           | <uint32_t>(tcp_failures & 0xff) << 16
                           | <uint32_t>(timeouts & 0xff) << 24)

    cdef void on_status(self, UpstreamNode node, int status):
        """The node answered with ``status``."""
        cdef uint8_t verdict
        if node is None or node.health == NULL or status < 0 or status >= 600:
            return
        verdict = self.verdict[status]
        if verdict == 1:
            if gw_node_state(node.health) == 0:
                return  # healthy with nothing counted: nothing to write (the common case)
            self.report(node, HEALTH_SUCCESS, status)
        elif verdict == 2:
            self.report(node, HEALTH_HTTP_FAILURE, status)

    cdef void on_failure(self, UpstreamNode node, int gateway_status):
        """No usable answer from the node: 504 for a timeout, anything else is a TCP failure
        (refused, reset, closed or garbled before a response)."""
        if node is None or node.health == NULL:
            return
        self.report(node, HEALTH_TIMEOUT if gateway_status == 504 else HEALTH_TCP_FAILURE, 0)

    cdef void report(self, UpstreamNode node, HealthOutcome outcome, int status):
        cdef int32_t change = gw_health_report(node.health_table, node.health_slot,
                                               <uint8_t>outcome, <uint16_t>status,
                                               self.thresholds)
        if change == 1:
            log.warning("upstream %s node %s:%d marked unhealthy by passive checks (%s%s)",
                        self.upstream_id, node.host, node.port,
                        ("http_status", "tcp_failure", "timeout")[<int>outcome - 1],
                        f" {status}" if status else "")
        elif change == 2:
            log.warning("upstream %s node %s:%d healthy again (passive checks)",
                        self.upstream_id, node.host, node.port)
