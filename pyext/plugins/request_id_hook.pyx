cdef extern from "sys/random.h":
    ssize_t getrandom(void *buf, size_t buflen, unsigned int flags) nogil

cdef const char *HEX_DIGITS = b"0123456789abcdef"


cdef str uuid4_text():
    """A random (version 4) UUID in its 36-character text form, from the kernel's CSPRNG."""
    cdef unsigned char raw[16]
    cdef char text[36]
    cdef int i, o = 0
    if getrandom(raw, 16, 0) != 16:
        raw_bytes = os.urandom(16)
        memcpy(raw, PyBytes_AS_STRING(raw_bytes), 16)
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    for i in range(16):
        if i == 4 or i == 6 or i == 8 or i == 10:
            text[o] = b'-'
            o += 1
        text[o] = HEX_DIGITS[raw[i] >> 4]
        text[o + 1] = HEX_DIGITS[raw[i] & 15]
        o += 2
    return PyUnicode_DecodeLatin1(text, 36, NULL)


cdef class RequestIdRewrite(NativeHook):
    """``request-id``'s rewrite: the client's id (found in the parsed head) or a new one
    (a UUID made here; nanoid and range_id by the plugin), sent upstream, kept in the request
    state for ``$request_id``, and as a default response header."""

    def configure(self, str header, bint in_response, bint uuid):
        self.header = header.encode("latin-1")
        self.lower_header = self.header.lower()
        self.in_response = in_response
        self.uuid = uuid

    cdef object run(self, Exchange ex):
        cdef object request_id = ex.header_value(self.lower_header)
        cdef bytes value
        if not request_id:
            request_id = uuid4_text() if self.uuid else self.plugin.generate()
            value = (<str>request_id).encode("latin-1")
            ex.set_upstream_header_bytes(self.header, self.lower_header, value)
        else:
            value = (<str>request_id).encode("latin-1")
        ex.state_dict()["request_id"] = request_id
        if self.in_response:
            ex.set_default_response_header_bytes(self.header, self.lower_header, value)
        return None
