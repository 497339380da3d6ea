# The nghttp2 plumbing both HTTP/2 directions share: the server sessions of downstream clients
# (h2_session, h2_stream, grpc_h2) and the client sessions to gRPC nodes (h2_upstream). Each
# side keeps its own callbacks and policy; what is here is the mechanics: callback tables and
# options made once per process, SETTINGS, the send loop into a transport, nghttp2_nv arrays,
# DATA framed from a queue of bytes, and nghttp2's errors as text. Everything runs once per
# flush, header block or DATA frame, as the code it replaced did: no per-frame cost is added.

cdef enum:
    # A flush hands the transport this much at a time (the send buffer stays this small).
    H2_SEND_BATCH = 65536


cdef int h2_buf_reserve(h2_buf *b, size_t need) except -1:
    """Makes room for ``need`` bytes in all (doubling, so appends stay amortised O(1))."""
    cdef size_t cap
    cdef uint8_t *p
    if need <= b.cap:
        return 0
    cap = need * 2 if need > 1024 else 2048
    p = <uint8_t *>PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef inline void h2_buf_free(h2_buf *b) noexcept:
    if b.data != NULL:
        PyMem_Free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef nghttp2_session_callbacks *h2_new_callbacks(
        nghttp2_on_begin_headers_callback on_begin_headers,
        nghttp2_on_header_callback on_header,
        nghttp2_on_frame_recv_callback on_frame_recv,
        nghttp2_on_data_chunk_recv_callback on_data_chunk,
        nghttp2_on_stream_close_callback on_stream_close,
        nghttp2_on_frame_send_callback on_frame_send) except NULL:
    """A callback table: each side makes one per process and all its sessions share it (their
    user_data tells them apart). ``on_frame_send`` may be NULL."""
    cdef nghttp2_session_callbacks *cbs = NULL
    if nghttp2_session_callbacks_new(&cbs) != 0:
        raise MemoryError()
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers)
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header)
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk)
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close)
    if on_frame_send != NULL:
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send)
    return cbs


cdef nghttp2_option *h2_new_option() except NULL:
    """Options both sides set: windows are reopened by hand (nghttp2_session_consume*), once
    the other side of the proxy took the bytes, so a slow peer holds back only its stream."""
    cdef nghttp2_option *opt = NULL
    if nghttp2_option_new(&opt) != 0:
        raise MemoryError()
    nghttp2_option_set_no_auto_window_update(opt, 1)
    return opt


cdef void h2_submit_settings(nghttp2_session *session, uint32_t max_concurrent_streams,
                             uint32_t max_header_list_size, uint32_t initial_window_size):
    """Queues our SETTINGS: push off (neither side takes or makes pushes), the streams the
    peer may open, and where non-zero the header list limit and stream window offered."""
    cdef nghttp2_settings_entry iv[4]
    cdef size_t n = 2
    iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH
    iv[0].value = 0
    iv[1].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
    iv[1].value = max_concurrent_streams
    if max_header_list_size:
        iv[n].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[n].value = max_header_list_size
        n += 1
    if initial_window_size:
        iv[n].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[n].value = initial_window_size
        n += 1
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, n)


cdef int h2_send_due(nghttp2_session *session, object transport, h2_buf *buf,
                     bint *writing_paused) except 1:
    """Writes every frame nghttp2 has due to ``transport``, copied into ``buf`` so a flush
    makes one bytes object and one write (or one per H2_SEND_BATCH), until none is left or
    the transport pauses writing (``writing_paused``, which its pause_writing sets). Returns 0,
    or nghttp2's (negative) error: the session is broken."""
    cdef const uint8_t *p = NULL
    cdef nghttp2_ssize n
    buf.len = 0
    while not writing_paused[0]:
        n = nghttp2_session_mem_send2(session, &p)
        if n < 0:
            buf.len = 0
            return <int>n
        if n == 0:
            break
        h2_buf_reserve(buf, buf.len + <size_t>n)
        memcpy(buf.data + buf.len, p, n)
        buf.len += n
        if buf.len >= H2_SEND_BATCH:
            n = <nghttp2_ssize>buf.len
            buf.len = 0
            transport.write(PyBytes_FromStringAndSize(<const char *>buf.data, n))
    if buf.len:
        n = <nghttp2_ssize>buf.len
        buf.len = 0
        transport.write(PyBytes_FromStringAndSize(<const char *>buf.data, n))
    return 0


cdef inline bint h2_session_done(nghttp2_session *session) noexcept:
    """nghttp2 wants neither to read nor to write: GOAWAY went both ways (or a connection error
    was sent), and the connection can close."""
    return not nghttp2_session_want_read(session) and not nghttp2_session_want_write(session)


cdef inline str h2_error_text(long rc):
    return (<bytes>nghttp2_strerror(<int>rc)).decode()


cdef inline void h2_nv_set(nghttp2_nv *nv, const uint8_t *name, size_t namelen,
                           const uint8_t *value, size_t valuelen) noexcept nogil:
    nv.name = <uint8_t *>name
    nv.namelen = namelen
    nv.value = <uint8_t *>value
    nv.valuelen = valuelen
    nv.flags = NGHTTP2_NV_FLAG_NONE


cdef nghttp2_nv *h2_nv_array(list fields) except NULL:
    """``fields`` ([(name, value)] bytes) as nghttp2_nv pointing into them: PyMem_Free it after
    the submit (nghttp2 copies what it is given)."""
    cdef Py_ssize_t n = len(fields), i
    cdef nghttp2_nv *nva = <nghttp2_nv *>PyMem_Malloc((n if n else 1) * sizeof(nghttp2_nv))
    cdef bytes name, value
    if nva == NULL:
        raise MemoryError()
    for i in range(n):
        name, value = fields[i]
        h2_nv_set(&nva[i], <const uint8_t *>PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                  <const uint8_t *>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    return nva


cdef size_t h2_take_chunks(list chunks, size_t *first, uint8_t *buf, size_t length) except? 0:
    """A DATA source's read: copies up to ``length`` bytes from the front of ``chunks`` (bytes
    objects, ``first`` bytes of the first one already sent) into ``buf``, dropping the chunks
    it used up. Returns how many it copied."""
    cdef size_t n = 0, take, avail
    cdef bytes chunk
    while n < length and chunks:
        chunk = <bytes>chunks[0]
        avail = <size_t>PyBytes_GET_SIZE(chunk) - first[0]
        take = avail if avail <= length - n else length - n
        memcpy(buf + n, PyBytes_AS_STRING(chunk) + first[0], take)
        n += take
        if take == avail:
            del chunks[0]
            first[0] = 0
        else:
            first[0] += take
    return n
