cdef class HeadBuffer:
    """A growable C buffer used to assemble one head at a time (the build is synchronous, so one
    per worker is enough); ``take()`` copies it into a bytes object, the only allocation.

    Every copy out of a parsed buffer goes through ``add_span``: the span must lie inside the
    buffer it claims to come from, or nothing is copied and ``HeadSpanError`` is raised. No caller
    computes an offset of its own."""

    def __cinit__(self):
        self.capacity = HEAD_SCRATCH
        self.data = <char *>PyMem_Malloc(self.capacity)
        if self.data == NULL:
            raise MemoryError()
        self.length = 0

    def __dealloc__(self):
        if self.data != NULL:
            PyMem_Free(self.data)

    cdef inline int reserve(self, size_t extra) except -1:
        cdef size_t want = self.length + extra
        cdef size_t capacity = self.capacity
        cdef char *grown
        if want <= capacity:
            return 0
        if want < self.length or want > HEAD_BUFFER_MAX:
            raise HeadSpanError(f"response head of {want} bytes is over the head writer's limit")
        while capacity < want:
            capacity *= 2
        grown = <char *>PyMem_Realloc(self.data, capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = capacity
        return 0

    cdef inline void start(self):
        """Begins a new head (dropping whatever a build that raised half-way left)."""
        self.length = 0

    cdef inline int add(self, const char *src, size_t n) except -1:
        if self.length + n > self.capacity:
            self.reserve(n)
        memcpy(self.data + self.length, src, n)
        self.length += n
        return 0

    cdef inline int add_span(self, const char *base, size_t base_len, gw_span span) except -1:
        """Copies ``base[span]``: the one place a parsed span becomes a copy."""
        if <size_t>span.off > base_len or <size_t>span.len > base_len - <size_t>span.off:
            raise HeadSpanError(f"span {span.off}+{span.len} outside a {base_len}-byte head")
        return self.add(base + span.off, span.len)

    cdef inline int add_bytes(self, bytes b) except -1:
        return self.add(PyBytes_AS_STRING(b), <size_t>PyBytes_GET_SIZE(b))

    cdef inline int add_status_code(self, int status) except -1:
        """``HTTP/1.1 NNN `` (the reason phrase follows)."""
        cdef char code[4]
        if status < 100 or status > 599:
            raise HeadSpanError(f"status {status} is not a three-digit HTTP status")
        code[0] = <char>(48 + status // 100)
        code[1] = <char>(48 + (status // 10) % 10)
        code[2] = <char>(48 + status % 10)
        code[3] = b' '
        self.add("HTTP/1.1 ", 9)
        return self.add(code, 4)

    cdef inline int add_status_line(self, int status, const char *base, size_t base_len,
                                    gw_span reason) except -1:
        """The upstream's status line: the code from the parser's value, the reason from its
        span."""
        self.add_status_code(status)
        self.add_span(base, base_len, reason)
        return self.add("\r\n", 2)

    cdef int add_own_status_line(self, int status) except -1:
        """A status line the gateway chose: the registered reason phrase (or none)."""
        self.add_status_code(status)
        self.add_bytes(reason_phrase_bytes(status))
        return self.add("\r\n", 2)

    cdef int add_field(self, object name, object value) except -1:
        """A header given by Python code (plugins, local responses): str is written as
        latin-1, other values as their str()."""
        self.add_bytes(field_bytes(name))
        self.add(": ", 2)
        self.add_bytes(field_bytes(value))
        return self.add("\r\n", 2)

    cdef int end_head(self, int version_minor, bint chunked, bint close) except -1:
        """The framing and connection fields every response to a client ends with, then the
        empty line. ``chunked`` is only ever set for HTTP/1.1 clients."""
        if chunked:
            self.add("Transfer-Encoding: chunked\r\n", 28)
        if close:
            self.add("Connection: close\r\n", 19)
        elif version_minor == 0:
            self.add("Connection: keep-alive\r\n", 24)
        return self.add("\r\n", 2)

    cdef inline int add_header(self, const char *name, size_t name_len, const char *value,
                               size_t value_len) except -1:
        self.reserve(name_len + value_len + 4)
        memcpy(self.data + self.length, name, name_len)
        self.length += name_len
        self.data[self.length] = b':'
        self.data[self.length + 1] = b' '
        self.length += 2
        memcpy(self.data + self.length, value, value_len)
        self.length += value_len
        self.data[self.length] = b'\r'
        self.data[self.length + 1] = b'\n'
        self.length += 2
        return 0

    cdef inline int add_header_span(self, const char *name, size_t name_len, const char *base,
                                    size_t base_len, gw_span value) except -1:
        """A header whose name is ours and whose value comes from a parsed buffer."""
        self.add(name, name_len)
        self.add(": ", 2)
        self.add_span(base, base_len, value)
        return self.add("\r\n", 2)

    cdef inline int add_parsed_header(self, const char *base, size_t base_len,
                                      gw_header *e) except -1:
        """A header copied as parsed: name and value both from spans of ``base``."""
        self.add_span(base, base_len, e.name)
        self.add(": ", 2)
        self.add_span(base, base_len, e.value)
        return self.add("\r\n", 2)

    cdef inline bytes take(self):
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.length)
        self.length = 0
        return out


cdef inline bytes field_bytes(object value):
    if isinstance(value, bytes):
        return <bytes>value
    if isinstance(value, str):
        return (<str>value).encode("latin-1")
    return str(value).encode("latin-1")


class HeadSpanError(ValueError):
    """A span handed to the head writer does not lie inside its buffer (a parser bug): the
    response is refused instead of copying memory that is not the head's."""
