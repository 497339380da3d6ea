cdef class RequestContext:
    cdef ClientConnection client
    cdef public RouteEntry route
    cdef bytes data                      # buffer the request head's spans point into
    cdef gw_request_head *head
    cdef int version_minor
    cdef int body_kind                   # request body framing
    cdef uint64_t body_bytes
    cdef public UpstreamNode node
    cdef TryLog try_log                  # the tries before the last one; None until a retry
    cdef UpstreamGroup group
    cdef public bint upgrading           # a WebSocket upgrade is asked of the upstream
    cdef public double start_time
    cdef object raw_params               # [(name, value)] from the router
    cdef dict _params
    cdef bytes normalized_path
    cdef dict _state                     # per-request state shared between plugins
    cdef public object consumer
    cdef bint consumer_attached          # the access chain must take in the consumer's plugins
    cdef tuple consumer_before_proxy
    cdef tuple consumer_header_filter
    cdef tuple consumer_log
    cdef UpstreamGroup upstream_override # set by a plugin (traffic-split) before proxying
    cdef bytes upstream_host_override
    cdef bytes upstream_method            # set by a plugin (proxy-rewrite) to change the method
    cdef readonly list extra_response_headers  # (name, value) bytes added to whatever answers
    cdef readonly list default_response_headers  # (name, lower name, value): only if absent
    cdef readonly uint64_t body_limit    # per-request cap on the request body (0: the runtime's)
    cdef object _headers
    cdef dict _args
    cdef dict _cookies
    cdef readonly list upstream_header_set   # (name, value) lines plugins add upstream
    cdef readonly set upstream_header_remove # lowercased names of the client's lines not sent
    cdef uint64_t removed_name_lengths     # name_length_bit of each name in the removal set
    cdef readonly bytes upstream_path        # set by plugins to rewrite the path (+query)
    cdef public object response_headers    # header_filter view: list of [name, value]
    cdef uint64_t key_hash                 # the balancing key's ring position (chash)
    cdef object hashed_by                  # the key function key_hash was computed with

    cdef dict state_dict(self)
    cdef object header_value(self, bytes lower_name)
    cdef void attach(self, object consumer) except *
    cdef void add_response_header_bytes(self, bytes name, bytes value) except *
    cdef void set_default_response_header_bytes(self, bytes name, bytes lower_name,
                                                bytes value) except *
    cdef void set_upstream_header_bytes(self, bytes name, bytes lower_name, bytes value) except *
    cdef void remove_upstream_header_bytes(self, bytes lower_name) except *
    cdef uint64_t balance_hash(self, object key_of) except? 0
    cdef bytes build_upstream_head(self)
    cdef bytes forwarded_query(self)
    cdef int add_transfer_encoding(self, HeadBuffer hb, const char *d, size_t dlen) except -1
