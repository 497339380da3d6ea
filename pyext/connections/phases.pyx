cdef class PhaseRunner(RequestContext):
    """The plugin phases of one request: runs the hooks in order, catches and logs what they
    raise, and reports the outcome. It decides nothing about the connections: the Exchange
    above it proxies, answers or aborts on what this layer reports."""

    # -- rewrite and access --

    cdef PhaseOutcome run_request_phases(self, tuple hooks):
        """Runs ``hooks`` (rewrite, then access); an auth plugin that attaches a consumer
        merges the consumer's access hooks into the rest of the chain."""
        cdef Py_ssize_t i
        try:
            for i in range(len(hooks)):
                result = call_hook(hooks[i], <Exchange>self)
                if result is not None:
                    if asyncio.iscoroutine(result):
                        self.pending = self.finish_phases_async(result, hooks[i + 1:])
                        return PHASES_PENDING
                    return self.settle(result)
                if self.consumer_attached:
                    self.consumer_attached = False
                    return self.run_request_phases(self.consumer.merge_access(hooks[i + 1:]))
        except Exception:
            log.exception("plugin failed on route %s", self.route.id)
            return PHASES_FAILED
        return PHASES_PASSED

    async def finish_phases_async(self, first, tuple rest):
        """The slow path, taken only when a hook is a coroutine: finishes the phases in order
        and returns their outcome."""
        cdef Py_ssize_t i = 0
        try:
            result = await first
            if result is None and self.consumer_attached:
                self.consumer_attached = False
                rest = self.consumer.merge_access(rest)
            while result is None and i < len(rest):
                result = rest[i](self)
                i += 1
                if asyncio.iscoroutine(result):
                    result = await result
                if result is None and self.consumer_attached:
                    self.consumer_attached = False
                    rest = self.consumer.merge_access(rest[i:])
                    i = 0
        except Exception:
            log.exception("plugin failed on route %s", self.route.id)
            return PHASES_FAILED
        return PHASES_PASSED if result is None else self.settle(result)

    cdef PhaseOutcome settle(self, object result):
        """A hook's answer as a Response: a ``Response``, a ``(status, body[, headers])``
        tuple or an int status; anything else is the plugin's error."""
        if isinstance(result, Response):
            self.answer = <Response>result
        elif isinstance(result, tuple):
            body = result[1] if len(result) > 1 else b""
            self.answer = Response(int(result[0]), body, result[2] if len(result) > 2 else None)
        elif isinstance(result, int):
            self.answer = Response(result, b"")
        else:
            log.error("plugin on route %s returned %r; expected a Response", self.route.id, result)
            return PHASES_FAILED
        return PHASES_ANSWERED

    cdef Response take_answer(self):
        cdef Response answer = self.answer
        self.answer = None
        return answer

    cdef object take_pending(self):
        pending = self.pending
        self.pending = None
        return pending

    # -- the other phases --

    cdef bint run_hooks(self, tuple hooks, str phase, bint keep_going):
        """Runs one phase's hooks in order: the one place a hook's failure is caught and
        logged (with the phase and route). Returns False when a hook failed; with
        ``keep_going`` (the log phase) the hooks after it still run. A coroutine a hook
        returns runs in the background: only rewrite and access are awaited."""
        cdef bint ok = True
        if hooks is None:
            return True
        for hook in hooks:
            try:
                result = call_hook(hook, <Exchange>self)
                # asyncio.iscoroutine(None) costs an ABC isinstance check: test None first
                if result is not None and asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("%s plugin failed on route %s", phase, self.route.id)
                ok = False
                if not keep_going:
                    return False
        return ok

    cdef void run_header_filter_hooks(self):
        """The route's header_filter hooks, then the consumer's; a failing hook is logged and
        the response goes out as the hooks before it left it."""
        if self.run_hooks(self.route.header_filter, "header_filter", False):
            self.run_hooks(self.consumer_header_filter, "header_filter", False)

    cdef bytes filter_body(self, bytes chunk, bint last):
        """Runs the body_filter hooks in order; a hook returns the new chunk (None keeps it).
        None when a hook failed (logged): the response cannot be completed."""
        try:
            for hook in self.route.body_filter:
                result = hook(self, chunk, last)
                if result is not None:
                    chunk = result.encode() if isinstance(result, str) else bytes(result)
        except Exception:
            log.exception("body_filter plugin failed on route %s", self.route.id)
            return None
        return chunk

    cdef void run_log_phase(self):
        """The route's log hooks, the consumer's, then the access log: every one runs even
        when another fails."""
        cdef RouteEntry route = self.route
        if route is not None:
            self.run_hooks(route.log, "log", True)
        self.run_hooks(self.consumer_log, "log", True)
        if self.client.server.on_log is not None:
            try:
                self.client.server.on_log(self)
            except Exception:
                log.exception("access log failed")
