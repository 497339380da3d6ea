cdef class HeadBuffer:
    cdef char *data
    cdef size_t length
    cdef size_t capacity
    cdef inline void start(self)
    cdef inline int reserve(self, size_t extra) except -1
    cdef inline int add(self, const char *src, size_t n) except -1
    cdef inline int add_span(self, const char *base, size_t base_len, gw_span span) except -1
    cdef inline int add_bytes(self, bytes b) except -1
    cdef inline int add_status_code(self, int status) except -1
    cdef int add_own_status_line(self, int status) except -1
    cdef int add_field(self, object name, object value) except -1
    cdef int end_head(self, int version_minor, bint chunked, bint close) except -1
    cdef inline int add_status_line(self, int status, const char *base, size_t base_len,
                                    gw_span reason) except -1
    cdef inline int add_header(self, const char *name, size_t name_len, const char *value,
                               size_t value_len) except -1
    cdef inline int add_header_span(self, const char *name, size_t name_len, const char *base,
                                    size_t base_len, gw_span value) except -1
    cdef inline int add_parsed_header(self, const char *base, size_t base_len,
                                      gw_header *e) except -1
    cdef inline bytes take(self)
