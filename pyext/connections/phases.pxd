cdef enum PhaseOutcome:
    PHASES_PASSED = 0       # every rewrite/access hook let the request through
    PHASES_ANSWERED = 1     # a hook answered it (take_answer)
    PHASES_FAILED = 2       # a hook raised or answered with something that is not a response
    PHASES_PENDING = 3      # a hook returned a coroutine: await take_pending() for the outcome

cdef class PhaseRunner(RequestContext):
    cdef Response answer                 # what a rewrite/access hook answered
    cdef object pending                  # the coroutine finishing the phases asynchronously

    cdef PhaseOutcome run_request_phases(self, tuple hooks)
    cdef PhaseOutcome settle(self, object result)
    cdef Response take_answer(self)
    cdef object take_pending(self)
    cdef bint run_hooks(self, tuple hooks, str phase, bint keep_going)
    cdef void run_header_filter_hooks(self)
    cdef bytes filter_body(self, bytes chunk, bint last)
    cdef void run_log_phase(self)
