# One gRPC call proxied from a downstream HTTP/2 stream to a stream on a pooled upstream
# session (h2_upstream), with the gRPC rules a proxy must keep: trailers, deadlines, statuses.

cdef class GrpcDownstream:
    """The downstream stream as a gRPC call sees it (the HTTP/2 server session implements it).
    Flow control: send_data's bytes are reported back through GrpcCall.on_response_sent once
    they went out to the client; request bytes handed to the call are acknowledged to the
    client with consume_request."""
    cdef void send_response(self, list headers, bint end_stream)
    cdef void send_data(self, bytes data)
    cdef void send_trailers(self, list trailers)
    cdef void consume_request(self, size_t n)
    cdef void reset(self, uint32_t error_code)
    cdef void call_done(self, GrpcCall call)
    cdef void flush_out(self)

cdef class GrpcCall(H2StreamOwner):
    cdef GrpcDownstream down
    cdef Exchange ex                      # the request's context (chash keys), None from Python
    cdef bytearray early                  # request body received before start()
    cdef bint early_end
    cdef readonly bint started
    cdef H2UpstreamStream up
    cdef H2UpstreamPool pool
    cdef object loop
    cdef readonly UpstreamGroup group
    cdef readonly UpstreamNode node      # of the last try
    cdef UpstreamNode held                # the node counting this call in its `active`
    cdef list fields                      # request fields for the upstream, without :authority
    cdef bytes client_ip                  # for x-forwarded-for (None: not added)
    cdef bytes scheme                     # the client's, for x-forwarded-proto
    cdef bytes path
    cdef bytes authority                  # the client's; pass_host decides what is sent
    cdef set failed_nodes
    cdef readonly int attempts
    cdef object timer                     # the grpc-timeout deadline
    cdef double deadline                  # when it passes (monotonic)
    cdef size_t unacked                   # request bytes held back from the client's window
    cdef readonly bint responded          # a response head went downstream
    cdef readonly bint finished           # trailers (or a reset) went downstream
    cdef readonly int grpc_status         # what the client was told (-1: not known yet)
    cdef readonly int http_status         # the upstream's :status (0: none)
    cdef readonly double started_at

    cdef double take_fields(self, list client_fields)
    cdef void start(self, UpstreamGroup group)
    cdef void try_node(self, bytearray body, bint body_ended)
    cdef void on_request_data(self, bytes data, bint end)
    cdef void on_response_sent(self, size_t n)
    cdef void on_client_reset(self)
    cdef void answer_status(self, int code, str message)
    cdef void end(self)
