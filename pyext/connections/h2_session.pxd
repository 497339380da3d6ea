# One HTTP/2 client connection (nghttp2 server session) and its streams. Each stream stands in
# for a ClientConnection towards the Exchange that proxies its request, so routing, plugins,
# limits and the upstream side are the HTTP/1.1 ones; only framing differs.
cdef class H2Stream(ClientConnection):
    cdef H2Connection conn
    cdef int32_t stream_id
    cdef bytes method
    cdef bytes path
    cdef bytes authority
    cdef bytes cookie                      # RFC 9113 8.2.3: cookie crumbs joined with "; "
    cdef size_t header_list_size
    cdef bint too_large                    # the header list went over max_header_list_size
    cdef bint has_length                   # content-length sent: the body is length-delimited
    cdef bint chunked_body                 # no content-length: the body goes upstream chunked
    cdef bint remote_closed                # END_STREAM received
    cdef size_t unconsumed                 # body bytes received while the upstream was full
    cdef list out                          # response body bytes not yet framed
    cdef size_t out_first                  # bytes of out[0] already framed
    cdef size_t out_size
    cdef bint out_eof                      # the response is complete once `out` is framed
    cdef bint submitted                    # the response HEADERS is queued in the session
    cdef bint deferred                     # the data source returned DEFERRED: resume on data
    cdef bint upstream_held                # the upstream was paused for this stream's window
    cdef GrpcCall grpc                     # a gRPC route's call: takes the body raw (grpc_h2.pyx)
    cdef bint held_is_fields               # held_head is hold_fields' packed fields, not a head
    cdef void add_field(self, const uint8_t *name, size_t namelen, const uint8_t *value,
                        size_t valuelen) except *
    cdef void record_field(self, size_t namelen, size_t valuelen)
    cdef void on_headers_done(self, bint end_stream) except *
    cdef void on_data(self, const uint8_t *data, size_t size) except *
    cdef void on_end_stream(self) except *
    cdef void on_closed(self, uint32_t error_code) except *
    cdef void respond_plain(self, int status, str reason) except *
    cdef void submit_head(self, bytes head, bytes body, bint more) except *
    cdef void hold_fields(self, gw_response_head *r, bytes buf, int32_t n, size_t inline_body,
                          uint32_t drop) except *
    cdef void submit_fields(self, bytes packed, bytes body, bint more) except *
    cdef void submit_held(self, bytes held, bytes body, bint more) except *
    cdef void queue_inline_body(self, bytes buf, size_t n)
    cdef void submit_nv(self, nghttp2_nv *nva, size_t nvlen, bytes body, bint more) except *
    cdef void release_upstream(self)
    cdef void reset(self, uint32_t error_code)

cdef class H2Connection(ClientConnection):
    cdef nghttp2_session *session
    cdef dict streams                      # stream id -> H2Stream
    cdef bint in_recv                      # inside mem_recv2: output is sent after it returns
    cdef bint flushing                     # inside mem_send2: no re-entry
    cdef bint goaway_sent
    cdef size_t max_header_list_size
    cdef gw_response_head rhead            # scratch: a response head turned into HEADERS
    cdef h2_buf names                      # scratch: lowercased field names for nghttp2_nv
    cdef h2_buf fields                     # scratch: the header block being read, as HTTP/1.1
                                           # lines (blocks never interleave: RFC 9113 4.3)
    cdef h2_buf sendbuf                    # scratch: the frames one flush sends
    cdef void put_field(self, const uint8_t *name, size_t namelen, const uint8_t *value,
                        size_t valuelen) except *
    cdef bytes render_head(self, bytes method, bytes target, bytes authority, bytes cookie,
                           bint chunked, gw_request_head *h)
    cdef void start(self, bytes first, bytes upgrade_settings=*, bytes request=*,
                    gw_request_head *head=*) except *
    cdef void run_upgraded_request(self, bytes settings, bytes request,
                                   gw_request_head *head) except *
    cdef void open_stream(self, int32_t stream_id) except *
    cdef void stream_gone(self, H2Stream s)
    cdef bint flush_pending                # a flush is scheduled for the end of this loop turn
    cdef void flush(self)
    cdef void flush_soon(self)
    cdef void goaway(self, uint32_t error_code)
    cdef void drain(self, double until)
